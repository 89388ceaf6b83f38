// Package location parses s3:// URLs and maps object keys to destination
// paths, refusing any key that would land outside the destination.
package location

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// ErrBadURL reports a source that is not an s3://bucket[/key] URL.
var ErrBadURL = errors.New("malformed S3 URL")

// ErrUnsafeKey reports a key that cannot become a path under the destination.
var ErrUnsafeKey = errors.New("unsafe key")

// maxNameLen is the longest file name most Linux filesystems accept.
const maxNameLen = 255

// Source is a parsed s3:// URL.
type Source struct {
	Bucket string
	Key    string // the key, or the prefix when IsPrefix
}

// IsPrefix reports whether the URL names every object under a prefix: it
// ends with "/" or names a whole bucket.
func (s Source) IsPrefix() bool { return s.Key == "" || strings.HasSuffix(s.Key, "/") }

// String renders the source as an s3:// URL.
func (s Source) String() string { return "s3://" + s.Bucket + "/" + s.Key }

// ParseS3URL parses s3://bucket/key, s3://bucket/prefix/ or s3://bucket.
func ParseS3URL(raw string) (Source, error) {
	rest, ok := strings.CutPrefix(raw, "s3://")
	if !ok {
		return Source{}, fmt.Errorf("%w %q: want s3://bucket/key or s3://bucket/prefix/", ErrBadURL, raw)
	}
	bucket, key, _ := strings.Cut(rest, "/")
	if err := checkBucket(bucket); err != nil {
		return Source{}, fmt.Errorf("%w %q: %w", ErrBadURL, raw, err)
	}
	if strings.ContainsRune(key, 0) {
		return Source{}, fmt.Errorf("%w %q: key contains a NUL byte", ErrBadURL, raw)
	}
	return Source{Bucket: bucket, Key: key}, nil
}

// checkBucket applies S3's bucket naming rules loosely: 3 to 63 characters of
// lower-case letters, digits, dots and hyphens (S3-compatible stores allow
// some upper case and underscores too, so those pass).
func checkBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q must be 3 to 63 characters", b)
	}
	for _, r := range b {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("bucket name %q has the character %q", b, r)
		}
	}
	return nil
}

// RelPath checks that rel, a key or the part of a key below a prefix, is a
// safe relative path and returns it in the host's form. It refuses empty
// names, absolute paths, "." and ".." segments, NUL bytes and names longer
// than a filesystem takes.
func RelPath(rel string) (string, error) {
	switch {
	case rel == "":
		return "", fmt.Errorf("%w: empty name", ErrUnsafeKey)
	case strings.ContainsRune(rel, 0):
		return "", fmt.Errorf("%w %q: contains a NUL byte", ErrUnsafeKey, rel)
	case strings.HasPrefix(rel, "/"):
		return "", fmt.Errorf("%w %q: absolute path", ErrUnsafeKey, rel)
	case strings.HasSuffix(rel, "/"):
		return "", fmt.Errorf("%w %q: names a directory", ErrUnsafeKey, rel)
	}
	for seg := range strings.SplitSeq(rel, "/") {
		switch {
		case seg == "..":
			return "", fmt.Errorf("%w %q: escapes the destination with ..", ErrUnsafeKey, rel)
		case seg == ".":
			return "", fmt.Errorf("%w %q: has a . segment", ErrUnsafeKey, rel)
		case len(seg) > maxNameLen:
			return "", fmt.Errorf("%w %q: a name is longer than %d bytes", ErrUnsafeKey, truncate(rel), maxNameLen)
		}
	}
	return filepath.FromSlash(path.Clean(rel)), nil // folds "a//b" to "a/b"
}

// Target returns where the object key lands, as cp would put it:
//   - for a prefix source, the key's path below the prefix, under dest;
//   - for a key and a dest ending in "/" (or destIsDir), the key's base name
//     under dest;
//   - otherwise dest itself.
//
// dest must be absolute; the result is absolute and inside dest's directory
// tree, or an error wrapping ErrUnsafeKey.
func Target(src Source, key, dest string, destIsDir bool) (string, error) {
	if !filepath.IsAbs(dest) {
		return "", fmt.Errorf("destination %q is not an absolute path", dest)
	}
	var rel string
	switch {
	case src.IsPrefix():
		r, ok := strings.CutPrefix(key, src.Key)
		if !ok {
			return "", fmt.Errorf("%w %q: not under the prefix %q", ErrUnsafeKey, key, src.Key)
		}
		rel = r
	case strings.HasSuffix(dest, "/") || destIsDir:
		rel = path.Base(key)
		if rel == "/" || rel == "." || rel == ".." || key == "" {
			return "", fmt.Errorf("%w %q: has no base name", ErrUnsafeKey, key)
		}
	default:
		return filepath.Clean(dest), nil
	}
	safe, err := RelPath(rel)
	if err != nil {
		return "", fmt.Errorf("key %q: %w", key, err)
	}
	return filepath.Join(dest, safe), nil
}

// PartPath is the file a transfer writes before it is renamed to final: in
// the same directory, so the rename is atomic, and named by the transfer
// and a token its creator drew, so that a part file is only ever the one
// its creator made: a worker that cannot see it (another host's disk)
// finds none rather than one of its own. The final name's base is
// shortened as needed so the name always fits in NAME_MAX (255 bytes).
func PartPath(final, transfer, token string) string {
	return partStem(final, transfer) + token + ".part"
}

// PartGlob is a filepath.Glob pattern matching every part file of the
// transfer, whatever its token.
func PartGlob(final, transfer string) string {
	return globEscape(partStem(final, transfer)) + "*.part"
}

// PartTokenLen is the length of the tokens PartPath expects.
const PartTokenLen = 16

// NewPartToken draws the token of a new part file: 64 random bits, in hex.
func NewPartToken() string {
	var b [PartTokenLen / 2]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// PartMissing says why a worker (me) cannot find the part file that
// another worker (maker) made: they do not share DEST, or it was removed.
func PartMissing(part, maker, me string) string {
	if maker == me || maker == "" {
		return fmt.Sprintf("part file %s was removed", part)
	}
	return fmt.Sprintf("the workers do not share DEST: part file %s, made by %s, is not visible to %s (or it was removed)", part, maker, me)
}

// nameMax is the longest file name Linux filesystems take, in bytes.
const nameMax = 255

// partStem is a part file's name up to its token.
func partStem(final, transfer string) string {
	dir, base := filepath.Split(final)
	suffix := ".s3fleet-" + transfer + "-"
	if room := nameMax - len(suffix) - PartTokenLen - len(".part"); len(base) > room {
		base = cutUTF8(base, max(room, 0))
	}
	return dir + base + suffix
}

// cutUTF8 shortens s to at most n bytes without splitting a character.
func cutUTF8(s string, n int) string {
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// globEscape quotes filepath.Match's metacharacters.
func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`).Replace(s)
}

// Within reports whether the absolute, clean path p is root or lies below it.
func Within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// truncate shortens a long name for an error message.
func truncate(s string) string {
	if len(s) <= 60 {
		return s
	}
	return s[:60] + "…"
}
