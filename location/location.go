// Package location parses object URLs (s3://bucket/key, and NAME://… for a
// remote of the configuration) and maps object keys to destination paths
// or keys, refusing any key that would land outside the destination.
package location

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"
)

// ErrBadURL reports a source that is not an s3://bucket[/key] URL.
var ErrBadURL = errors.New("malformed S3 URL")

// ErrUnknownRemote reports a NAME:// URL whose name no remote of the
// configuration has.
var ErrUnknownRemote = errors.New("unknown remote")

// ErrUnsafeKey reports a key that cannot become a path under the destination.
var ErrUnsafeKey = errors.New("unsafe key")

// maxNameLen is the longest file name most Linux filesystems accept.
const maxNameLen = 255

// MaxKeyLen is the longest object key S3 takes, in bytes.
const MaxKeyLen = 1024

// TopLevel is the scheme of the top-level endpoint (the endpoint setting):
// s3://bucket/key. Any other scheme names a remote of the configuration.
const TopLevel = "s3"

// Source is a parsed object URL: s3://bucket/key on the top-level
// endpoint, or NAME://bucket/key on a remote of the configuration.
type Source struct {
	Remote string // empty: the top-level endpoint
	Bucket string
	Key    string // the key, or the prefix when IsPrefix
}

// IsPrefix reports whether the URL names every object under a prefix: it
// ends with "/" or names a whole bucket.
func (s Source) IsPrefix() bool { return s.Key == "" || strings.HasSuffix(s.Key, "/") }

// String renders the source as its URL.
func (s Source) String() string { return Scheme(s.Remote) + "://" + s.Bucket + "/" + s.Key }

// Scheme is the URL scheme of a remote: s3 for the top-level endpoint.
func Scheme(remote string) string {
	if remote == "" {
		return TopLevel
	}
	return remote
}

// ParseS3URL parses s3://bucket/key, s3://bucket/prefix/ or s3://bucket.
func ParseS3URL(raw string) (Source, error) {
	if !strings.HasPrefix(raw, TopLevel+"://") {
		return Source{}, fmt.Errorf("%w %q: want s3://bucket/key or s3://bucket/prefix/", ErrBadURL, raw)
	}
	return ParseURL(raw, nil)
}

// IsURL reports whether raw is written as an object URL (NAME://…) rather
// than a local path, whether or not NAME is a configured remote.
func IsURL(raw string) bool {
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok || scheme == "" || !(scheme[0] >= 'a' && scheme[0] <= 'z' || scheme[0] >= 'A' && scheme[0] <= 'Z') {
		return false
	}
	for _, r := range scheme {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("+.-_", r)) {
			return false
		}
	}
	return true // a URL, of a remote or not: never a local path named "S3:"
}

// ValidRemoteName checks a remote's name: lower-case letters, digits and
// hyphens, starting with a letter, at most 32 bytes, and not "s3".
func ValidRemoteName(name string) error {
	if name == TopLevel {
		return fmt.Errorf("remote name %q is the top-level endpoint's", name)
	}
	if name == "" || len(name) > 32 || name[0] < 'a' || name[0] > 'z' {
		return fmt.Errorf("remote name %q: want a lower-case letter, then letters, digits or '-' (at most 32)", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("remote name %q has the character %q", name, r)
		}
	}
	return nil
}

// ParseURL parses an object URL: s3://bucket[/key] on the top-level
// endpoint, or NAME://bucket[/key] where NAME is one of remotes. An
// unknown NAME is an error that lists the configured remotes.
func ParseURL(raw string, remotes []string) (Source, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return Source{}, fmt.Errorf("%w %q: want s3://bucket/key or REMOTE://bucket/key", ErrBadURL, raw)
	}
	var src Source
	if scheme != TopLevel {
		if err := ValidRemoteName(scheme); err != nil {
			return Source{}, fmt.Errorf("%w %q in %q: %w", ErrUnknownRemote, scheme, raw, err)
		}
		if !slices.Contains(remotes, scheme) {
			known := "no remotes are configured"
			if len(remotes) > 0 {
				known = "the configured remotes are " + strings.Join(remotes, ", ")
			}
			return Source{}, fmt.Errorf("%w %q in %q: %s (the remotes: section of the config file); s3:// is the top-level endpoint",
				ErrUnknownRemote, scheme, raw, known)
		}
		src.Remote = scheme
	}
	bucket, key, _ := strings.Cut(rest, "/")
	if err := checkBucket(bucket); err != nil {
		return Source{}, fmt.Errorf("%w %q: %w", ErrBadURL, raw, err)
	}
	if strings.ContainsRune(key, 0) {
		return Source{}, fmt.Errorf("%w %q: key contains a NUL byte", ErrBadURL, raw)
	}
	if len(key) > MaxKeyLen {
		return Source{}, fmt.Errorf("%w %q: the key is longer than %d bytes", ErrBadURL, truncate(raw), MaxKeyLen)
	}
	src.Bucket, src.Key = bucket, key
	return src, nil
}

// ParseDest reads a destination as the fleet records it: an absolute
// clean path, or an object URL of any well-formed remote name (the worker
// resolves the name from its own configuration).
func ParseDest(dest string) (path string, obj Source, isObject bool, err error) {
	if IsURL(dest) {
		scheme, _, _ := strings.Cut(dest, "://")
		obj, err = ParseURL(dest, []string{scheme})
		if err == nil && (obj.Key == "" || strings.HasSuffix(obj.Key, "/")) {
			err = fmt.Errorf("destination %q names no key", dest)
		}
		return "", obj, err == nil, err
	}
	if !filepath.IsAbs(dest) || filepath.Clean(dest) != dest {
		return "", Source{}, false, fmt.Errorf("destination %q is not an absolute clean path", dest)
	}
	return dest, Source{}, false, nil
}

// TargetKey returns the key an object lands at under an object
// destination, as Target does for files, with keys kept as they are (S3
// keys are not paths: "a//b" stays "a//b"):
//   - for a prefix source, the key below the prefix, after dest's key;
//   - for a key and a dest that is a prefix (ends in "/", or a bucket),
//     the key's last segment after it;
//   - otherwise dest's key itself.
func TargetKey(src Source, key string, dest Source) (string, error) {
	var out string
	switch {
	case src.IsPrefix():
		rel, ok := strings.CutPrefix(key, src.Key)
		if !ok || rel == "" {
			return "", fmt.Errorf("%w %q: not under the prefix %q", ErrUnsafeKey, key, src.Key)
		}
		if !dest.IsPrefix() {
			return "", fmt.Errorf("destination %s must end with / for a prefix", dest)
		}
		out = dest.Key + rel
	case dest.IsPrefix():
		base := key[strings.LastIndex(key, "/")+1:]
		if base == "" {
			return "", fmt.Errorf("%w %q: has no last segment", ErrUnsafeKey, key)
		}
		out = dest.Key + base
	default:
		out = dest.Key
	}
	if len(out) > MaxKeyLen {
		return "", fmt.Errorf("%w %q: the destination key would be longer than %d bytes", ErrUnsafeKey, truncate(out), MaxKeyLen)
	}
	return out, nil
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
	if !validToken(token) {
		// Not one NewPartToken drew (a record rewritten in Redis, say):
		// its hash keeps the path beside final, and names no file made.
		h := sha256.Sum256([]byte(token))
		token = "x" + hex.EncodeToString(h[:])[:PartTokenLen-1]
	}
	return partStem(final, transfer) + token + ".part"
}

// validToken reports whether token is one NewPartToken draws.
func validToken(token string) bool {
	if len(token) != PartTokenLen {
		return false
	}
	for _, c := range token {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// PartGlob is a filepath.Glob pattern matching every part file of the
// transfer, whatever its token.
func PartGlob(final, transfer string) string {
	return globEscape(partStem(final, transfer)) + "*.part"
}

// IsPartOf reports whether name, a file's base name in final's directory,
// is a part file of the transfer, whatever its token: what PartGlob
// matches, for a caller that lists the directory once for many transfers.
// A transfer ID with a separator names no part file in that directory.
func IsPartOf(name, final, transfer string) bool {
	if strings.ContainsRune(transfer, filepath.Separator) {
		return false
	}
	_, stem := filepath.Split(partStem(final, transfer))
	return len(name) >= len(stem)+len(".part") && strings.HasPrefix(name, stem) && strings.HasSuffix(name, ".part")
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
