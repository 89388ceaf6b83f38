package location

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrNotAllowed reports an object outside a worker's allow list.
var ErrNotAllowed = errors.New("not in the allow list")

// Prefixes is an allow list of object URL prefixes (allow_read,
// allow_write): REMOTE://bucket/ or REMOTE://bucket/prefix/. An entry
// covers the objects of its remote and bucket whose keys begin with its
// prefix.
type Prefixes struct {
	setting string // its name, for messages
	list    []Source
}

// NewPrefixes parses the entries of the setting named setting.
func NewPrefixes(setting string, entries, remotes []string) (Prefixes, error) {
	p := Prefixes{setting: setting}
	for _, e := range entries {
		src, err := ParseURL(e, remotes)
		if err != nil {
			return Prefixes{}, fmt.Errorf("%s: %w", setting, err)
		}
		if !src.IsPrefix() {
			return Prefixes{}, fmt.Errorf("%s: %q names a key, not a prefix: end it with / (or it would cover %s-private/… too)", setting, e, e)
		}
		p.list = append(p.list, src)
	}
	return p, nil
}

// Empty reports whether the list has no entry.
func (p Prefixes) Empty() bool { return len(p.list) == 0 }

// Check returns nil when an entry covers obj, else an error wrapping
// ErrNotAllowed that names the setting.
func (p Prefixes) Check(obj Source) error {
	if HasSegment(obj.Key, ".", "..") {
		// Stores on a filesystem (versitygw, POSIX gateways) resolve them:
		// ok/../x is x there, outside ok/.
		return fmt.Errorf("%w: %s has a . or .. segment, which some stores resolve out of any prefix", ErrNotAllowed, obj)
	}
	for _, e := range p.list {
		if e.Remote == obj.Remote && e.Bucket == obj.Bucket && strings.HasPrefix(obj.Key, e.Key) {
			return nil
		}
	}
	entries := make([]string, len(p.list))
	for i, e := range p.list {
		entries[i] = e.String()
	}
	listed := "it is empty"
	if len(entries) > 0 {
		listed = "it has " + strings.Join(entries, ", ")
	}
	return fmt.Errorf("%w: %s is not under an entry of this worker's %s (%s)", ErrNotAllowed, obj, p.setting, listed)
}

// HasSegment reports whether a key has one of segs as a segment (a part
// between slashes): "." and ".." climb on a server that keeps objects as
// files, and "" (a "//") is dropped by one (versitygw).
func HasSegment(key string, segs ...string) bool {
	for seg := range strings.SplitSeq(key, "/") {
		if slices.Contains(segs, seg) {
			return true
		}
	}
	return false
}
