package location

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseS3URL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		raw        string
		want       Source
		wantPrefix bool
	}{
		{"key", "s3://bucket/key", Source{Bucket: "bucket", Key: "key"}, false},
		{"nested key", "s3://bucket/a/b/c.bin", Source{Bucket: "bucket", Key: "a/b/c.bin"}, false},
		{"key with spaces", "s3://bucket/my dir/my file.txt", Source{Bucket: "bucket", Key: "my dir/my file.txt"}, false},
		{"unicode key", "s3://bucket/ü ñ/日本語.txt", Source{Bucket: "bucket", Key: "ü ñ/日本語.txt"}, false},
		{"whole bucket", "s3://bucket", Source{Bucket: "bucket", Key: ""}, true},
		{"whole bucket with slash", "s3://bucket/", Source{Bucket: "bucket", Key: ""}, true},
		{"prefix", "s3://bucket/prefix/", Source{Bucket: "bucket", Key: "prefix/"}, true},
		{"nested prefix", "s3://bucket/a/b/", Source{Bucket: "bucket", Key: "a/b/"}, true},
		{"key kept verbatim", "s3://bucket//x/../y", Source{Bucket: "bucket", Key: "/x/../y"}, false},
		{"dotted and hyphenated bucket", "s3://my-bucket.example/k", Source{Bucket: "my-bucket.example", Key: "k"}, false},
		{"three character bucket", "s3://abc/k", Source{Bucket: "abc", Key: "k"}, false},
		{"63 character bucket", "s3://" + strings.Repeat("b", 63) + "/k", Source{Bucket: strings.Repeat("b", 63), Key: "k"}, false},
		{"upper case and underscore tolerated", "s3://My_Bucket/k", Source{Bucket: "My_Bucket", Key: "k"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseS3URL(tc.raw)
			if err != nil {
				t.Fatalf("ParseS3URL(%q): %v", tc.raw, err)
			}
			if got != tc.want {
				t.Errorf("ParseS3URL(%q) = %+v, want %+v", tc.raw, got, tc.want)
			}
			if got.IsPrefix() != tc.wantPrefix {
				t.Errorf("ParseS3URL(%q).IsPrefix() = %v, want %v", tc.raw, got.IsPrefix(), tc.wantPrefix)
			}
		})
	}
}

func TestParseS3URLErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
	}{
		{"empty", ""},
		{"missing scheme", "bucket/key"},
		{"http", "http://bucket/key"},
		{"https", "https://bucket/key"},
		{"upper case scheme", "S3://bucket/key"},
		{"single slash", "s3:/bucket/key"},
		{"scheme only", "s3://"},
		{"empty bucket", "s3:///key"},
		{"bucket too short", "s3://ab/key"},
		{"bucket too long", "s3://" + strings.Repeat("b", 64) + "/key"},
		{"bucket with space", "s3://my bucket/key"},
		{"bucket with colon", "s3://bucket:9000/key"},
		{"bucket with query", "s3://bucket?x=1"},
		{"bucket with at sign", "s3://user@bucket/key"},
		{"bucket with unicode", "s3://bück/key"},
		{"bucket with NUL", "s3://buc\x00ket/key"},
		{"NUL in key", "s3://bucket/a\x00b"},
		{"NUL at end of key", "s3://bucket/key\x00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseS3URL(tc.raw)
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("ParseS3URL(%q) = %+v, %v; want an error wrapping ErrBadURL", tc.raw, got, err)
			}
			if got != (Source{}) {
				t.Errorf("ParseS3URL(%q) returned %+v with its error, want the zero Source", tc.raw, got)
			}
		})
	}
}

func TestSourceIsPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key  string
		want bool
	}{
		{"", true},
		{"prefix/", true},
		{"a/b/", true},
		{"/", true},
		{"key", false},
		{"a/b", false},
		{"dir/file.txt", false},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			t.Parallel()
			if got := (Source{Bucket: "bucket", Key: tc.key}).IsPrefix(); got != tc.want {
				t.Errorf("Source{Key: %q}.IsPrefix() = %v, want %v", tc.key, got, tc.want)
			}
		})
	}
}

func TestSourceStringRoundTrips(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"s3://bucket/key", "s3://bucket/prefix/", "s3://bucket/", "s3://bucket/ü ñ/x"} {
		t.Run(raw, func(t *testing.T) {
			t.Parallel()
			src, err := ParseS3URL(raw)
			if err != nil {
				t.Fatal(err)
			}
			if got := src.String(); got != raw {
				t.Errorf("String() = %q, want %q", got, raw)
			}
			again, err := ParseS3URL(src.String())
			if err != nil || again != src {
				t.Errorf("ParseS3URL(String()) = %+v, %v; want %+v", again, err, src)
			}
		})
	}
}

func TestRelPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, rel, want string
	}{
		{"plain", "file.txt", "file.txt"},
		{"nested", "a/b/c.txt", filepath.Join("a", "b", "c.txt")},
		{"spaces", "my dir/my file.txt", filepath.Join("my dir", "my file.txt")},
		{"unicode", "ü ñ/日本語.txt", filepath.Join("ü ñ", "日本語.txt")},
		{"double slash folded", "a//b", filepath.Join("a", "b")},
		{"many slashes folded", "a///b//c", filepath.Join("a", "b", "c")},
		{"dots inside names", "a..b/.hidden/..x/x..", filepath.Join("a..b", ".hidden", "..x", "x..")},
		{"three dots is a name", ".../x", filepath.Join("...", "x")},
		{"backslash is a name on unix", `a\b`, `a\b`},
		{"255 byte segment", strings.Repeat("n", 255), strings.Repeat("n", 255)},
		{"255 byte nested segment", "d/" + strings.Repeat("n", 255), filepath.Join("d", strings.Repeat("n", 255))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if filepath.Separator != '/' && strings.Contains(tc.rel, `\`) {
				t.Skip("backslash is a separator on this OS")
			}
			got, err := RelPath(tc.rel)
			if err != nil {
				t.Fatalf("RelPath(%q): %v", tc.rel, err)
			}
			if got != tc.want {
				t.Errorf("RelPath(%q) = %q, want %q", tc.rel, got, tc.want)
			}
			if filepath.IsAbs(got) || !filepath.IsLocal(got) {
				t.Errorf("RelPath(%q) = %q is not a local relative path", tc.rel, got)
			}
		})
	}
}

func TestRelPathRefusesUnsafe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, rel string
	}{
		{"empty", ""},
		{"parent", ".."},
		{"dot", "."},
		{"escape", "../x"},
		{"deep escape", "../../etc/passwd"},
		{"inner parent", "a/../b"},
		{"trailing parent", "a/.."},
		{"leading dot segment", "./a"},
		{"inner dot segment", "a/./b"},
		{"trailing dot segment", "a/."},
		{"absolute", "/abs"},
		{"root", "/"},
		{"double slash absolute", "//x"},
		{"directory", "a/"},
		{"directory with double slash", "a//"},
		{"NUL", "a\x00b"},
		{"NUL alone", "\x00"},
		{"256 byte segment", strings.Repeat("n", 256)},
		{"256 byte nested segment", "dir/" + strings.Repeat("n", 256) + "/x"},
		{"long unicode segment", strings.Repeat("ü", 128)}, // 256 bytes, 128 runes
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := RelPath(tc.rel)
			if !errors.Is(err, ErrUnsafeKey) {
				t.Fatalf("RelPath(%q) = %q, %v; want an error wrapping ErrUnsafeKey", tc.rel, got, err)
			}
			if got != "" {
				t.Errorf("RelPath(%q) returned %q with its error", tc.rel, got)
			}
		})
	}
}

// TestRelPathErrorTruncatesLongNames keeps a 100 KB key out of a log line.
func TestRelPathErrorTruncatesLongNames(t *testing.T) {
	t.Parallel()
	_, err := RelPath(strings.Repeat("n", 100_000))
	if !errors.Is(err, ErrUnsafeKey) {
		t.Fatalf("RelPath(long) = %v, want ErrUnsafeKey", err)
	}
	if len(err.Error()) > 300 {
		t.Errorf("error message is %d bytes long, want the name truncated", len(err.Error()))
	}
}

func TestTarget(t *testing.T) {
	t.Parallel()
	bucket := Source{Bucket: "bucket"}
	prefix := Source{Bucket: "bucket", Key: "data/"}
	single := Source{Bucket: "bucket", Key: "data/2024/report.csv"}
	tests := []struct {
		name      string
		src       Source
		key       string
		dest      string
		destIsDir bool
		want      string
	}{
		{"prefix maps key below it", prefix, "data/a.txt", "/dest", false, "/dest/a.txt"},
		{"prefix keeps nesting", prefix, "data/x/y/z.bin", "/dest", false, "/dest/x/y/z.bin"},
		{"prefix with dest slash", prefix, "data/a.txt", "/dest/", false, "/dest/a.txt"},
		{"prefix ignores destIsDir", prefix, "data/a.txt", "/dest", true, "/dest/a.txt"},
		{"prefix folds double slash", prefix, "data/a//b", "/dest", false, "/dest/a/b"},
		{"prefix spaces", prefix, "data/my dir/my file", "/dest", false, "/dest/my dir/my file"},
		{"prefix unicode", prefix, "data/ü ñ/ok.txt", "/dest", false, "/dest/ü ñ/ok.txt"},
		{"whole bucket", bucket, "a/b.txt", "/dest", false, "/dest/a/b.txt"},
		{"whole bucket into root", bucket, "a/b.txt", "/", false, "/a/b.txt"},
		{"unclean dest is cleaned", prefix, "data/a", "/dest/./sub/../x", false, "/dest/x/a"},
		{"single key into dir with slash", single, single.Key, "/dest/", false, "/dest/report.csv"},
		{"single key into destIsDir", single, single.Key, "/dest", true, "/dest/report.csv"},
		{"single key into plain dest", single, single.Key, "/dest/out.csv", false, "/dest/out.csv"},
		{"single key plain dest cleaned", single, single.Key, "/dest//x/../out.csv", false, "/dest/out.csv"},
		{"single top-level key into dir", Source{Bucket: "bucket", Key: "k"}, "k", "/dest/", false, "/dest/k"},
		{"single unicode key into dir", Source{Bucket: "bucket", Key: "ü/ñ ok.txt"}, "ü/ñ ok.txt", "/dest", true, "/dest/ñ ok.txt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Target(tc.src, tc.key, tc.dest, tc.destIsDir)
			if err != nil {
				t.Fatalf("Target(%+v, %q, %q, %v): %v", tc.src, tc.key, tc.dest, tc.destIsDir, err)
			}
			want := filepath.FromSlash(tc.want)
			if got != want {
				t.Errorf("Target(%+v, %q, %q, %v) = %q, want %q", tc.src, tc.key, tc.dest, tc.destIsDir, got, want)
			}
			if !filepath.IsAbs(got) {
				t.Errorf("Target result %q is not absolute", got)
			}
			root := filepath.Clean(tc.dest)
			if !tc.src.IsPrefix() && !tc.destIsDir && !strings.HasSuffix(tc.dest, "/") {
				root = filepath.Dir(root) // dest is the file itself
			}
			if !Within(root, got) {
				t.Errorf("Target result %q is outside %q", got, root)
			}
		})
	}
}

func TestTargetErrors(t *testing.T) {
	t.Parallel()
	bucket := Source{Bucket: "bucket"}
	prefix := Source{Bucket: "bucket", Key: "data/"}
	tests := []struct {
		name      string
		src       Source
		key       string
		dest      string
		destIsDir bool
		unsafe    bool // the error must wrap ErrUnsafeKey
	}{
		{"relative dest", prefix, "data/a", "dest", false, false},
		{"relative dot dest", prefix, "data/a", "./dest", false, false},
		{"relative plain dest for a key", Source{Bucket: "bucket", Key: "k"}, "k", "out.txt", false, false},
		{"empty dest", prefix, "data/a", "", false, false},
		{"key outside prefix", prefix, "other/a", "/dest", false, true},
		{"key is the prefix", prefix, "data/", "/dest", false, true},
		{"key shorter than prefix", prefix, "dat", "/dest", false, true},
		{"prefix traversal", prefix, "data/../../etc/passwd", "/dest", false, true},
		{"bucket traversal", bucket, "../etc/passwd", "/dest", false, true},
		{"inner traversal", bucket, "a/../../b", "/dest", false, true},
		{"parent key", bucket, "..", "/dest", false, true},
		{"dot segment", bucket, "a/./b", "/dest", false, true},
		{"absolute below bucket", bucket, "/etc/passwd", "/dest", false, true},
		{"absolute below prefix", prefix, "data//etc/passwd", "/dest", false, true},
		{"directory marker", bucket, "dir/", "/dest", false, true},
		{"empty key in bucket", bucket, "", "/dest", false, true},
		{"NUL in key", bucket, "x\x00y", "/dest", false, true},
		{"long segment", bucket, "d/" + strings.Repeat("n", 256), "/dest", false, true},
		{"single key parent base", Source{Bucket: "bucket", Key: "a/.."}, "a/..", "/dest/", false, true},
		{"single key dot", Source{Bucket: "bucket", Key: "."}, ".", "/dest", true, true},
		{"single key dotdot", Source{Bucket: "bucket", Key: ".."}, "..", "/dest", true, true},
		{"single empty key", Source{Bucket: "bucket", Key: "x"}, "", "/dest/", false, true},
		{"single root key", Source{Bucket: "bucket", Key: "x"}, "/", "/dest", true, true},
		{"single NUL base", Source{Bucket: "bucket", Key: "x"}, "d/x\x00y", "/dest", true, true},
		{"single long base", Source{Bucket: "bucket", Key: "x"}, strings.Repeat("n", 256), "/dest/", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Target(tc.src, tc.key, tc.dest, tc.destIsDir)
			if err == nil {
				t.Fatalf("Target(%+v, %q, %q, %v) = %q, want an error", tc.src, tc.key, tc.dest, tc.destIsDir, got)
			}
			if errors.Is(err, ErrUnsafeKey) != tc.unsafe {
				t.Errorf("Target(%+v, %q, %q, %v) error %v: wraps ErrUnsafeKey = %v, want %v",
					tc.src, tc.key, tc.dest, tc.destIsDir, err, !tc.unsafe, tc.unsafe)
			}
			if got != "" {
				t.Errorf("Target returned %q with its error", got)
			}
		})
	}
}

// TestTargetStaysInside runs hostile keys through every kind of source: each
// result, when there is one, lies strictly below dest.
func TestTargetStaysInside(t *testing.T) {
	t.Parallel()
	keys := []string{
		"../../etc/passwd", "data/../../x", "a/../../../b", "..", ".", "/", "//", "/etc/passwd",
		"a/./b", "./a", "a/..", "data/..", "data/.", "data//..//x", "x\x00y", `..\..\x`,
		"ü ñ/ok.txt", "data/ok", "data/a b/c", strings.Repeat("../", 50) + "x",
	}
	sources := []Source{{Bucket: "bucket", Key: ""}, {Bucket: "bucket", Key: "data/"}, {Bucket: "bucket", Key: "data/."}, {Bucket: "bucket", Key: "../"}}
	for _, dest := range []string{"/dest", "/dest/"} {
		for _, src := range sources {
			for _, key := range keys {
				for _, isDir := range []bool{false, true} {
					got, err := Target(src, key, dest, isDir)
					if err != nil {
						continue
					}
					if src.IsPrefix() || isDir || strings.HasSuffix(dest, "/") {
						if !Within("/dest", got) || got == "/dest" {
							t.Errorf("Target(%+v, %q, %q, %v) = %q, escapes /dest", src, key, dest, isDir, got)
						}
					} else if got != "/dest" {
						t.Errorf("Target(%+v, %q, %q, %v) = %q, want dest itself", src, key, dest, isDir, got)
					}
				}
			}
		}
	}
}

func TestPartPath(t *testing.T) {
	t.Parallel()
	const tok = "0123456789abcdef"
	long := strings.Repeat("x", 250)
	longUTF8 := strings.Repeat("€", 84) // 252 bytes of 3-byte characters
	tests := []struct {
		name, final, transfer, want string
	}{
		{"plain", "/dest/a.txt", "t1", "/dest/a.txt.s3fleet-t1-" + tok + ".part"},
		{"nested", "/dest/x/y/z.bin", "0123abcd", "/dest/x/y/z.bin.s3fleet-0123abcd-" + tok + ".part"},
		{"unicode", "/dest/ü ñ.txt", "t", "/dest/ü ñ.txt.s3fleet-t-" + tok + ".part"},
		{"250-byte name", "/dest/" + long, "0123456789abcdef01234567",
			"/dest/" + long[:255-len(".s3fleet-0123456789abcdef01234567-")-len(tok)-len(".part")] + ".s3fleet-0123456789abcdef01234567-" + tok + ".part"},
		{"252-byte name of 3-byte characters", "/dest/" + longUTF8, "0123456789abcdef01234567", // 200 bytes of room: 66 whole characters
			"/dest/" + strings.Repeat("€", 66) + ".s3fleet-0123456789abcdef01234567-" + tok + ".part"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := PartPath(tc.final, tc.transfer, tok)
			if got != tc.want {
				t.Errorf("PartPath(%q, %q) = %q, want %q", tc.final, tc.transfer, got, tc.want)
			}
			if filepath.Dir(got) != filepath.Dir(tc.final) {
				t.Errorf("PartPath(%q, %q) = %q is not in the final file's directory, so the rename is not atomic", tc.final, tc.transfer, got)
			}
			if got == tc.final {
				t.Errorf("PartPath(%q, %q) is the final path", tc.final, tc.transfer)
			}
			if n := len(filepath.Base(got)); n > 255 {
				t.Errorf("PartPath(%q) has a %d-byte name, over NAME_MAX", tc.final, n)
			}
			if !utf8.ValidString(got) {
				t.Errorf("PartPath(%q) split a character: %q", tc.final, got)
			}
			if ok, err := filepath.Match(PartGlob(tc.final, tc.transfer), got); !ok || err != nil {
				t.Errorf("PartGlob(%q) does not match %q: %v", tc.final, got, err)
			}
			if !IsPartOf(filepath.Base(got), tc.final, tc.transfer) {
				t.Errorf("IsPartOf(%q, %q) is false", filepath.Base(got), tc.final)
			}
			if IsPartOf(filepath.Base(got), tc.final, tc.transfer+"0") || IsPartOf(filepath.Base(tc.final), tc.final, tc.transfer) {
				t.Errorf("IsPartOf(%q) takes another transfer's part file, or the final file", tc.final)
			}
		})
	}
	if PartPath("/d/f", "t1", tok) == PartPath("/d/f", "t2", tok) || PartPath("/d/f", "t1", tok) == PartPath("/d/f", "t1", NewPartToken()) {
		t.Error("two transfers, or two part files of one transfer, share a name")
	}
	if a, b := NewPartToken(), NewPartToken(); len(a) != PartTokenLen || a == b {
		t.Errorf("tokens %q and %q", a, b)
	}
	// A token no NewPartToken drew (a record rewritten in Redis) still
	// names a file beside the final one.
	for _, forged := range []string{"../../../etc/x", "/etc/passwd", "", "0123456789ABCDEF", "a/b", strings.Repeat("f", 300)} {
		got := PartPath("/d/f", "t1", forged)
		if filepath.Dir(got) != "/d" || !strings.HasSuffix(got, ".part") || len(filepath.Base(got)) > 255 {
			t.Errorf("PartPath with token %q = %q", forged, got)
		}
	}
}

// TestPartGlobEscapesKeys matches only the transfer's own part files,
// whatever glob metacharacters the key holds.
func TestPartGlobEscapesKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	odd := filepath.Join(dir, `we[ir]d*?\.txt`)
	plain := filepath.Join(dir, "weid.txt")
	mine := []string{PartPath(odd, "x1", NewPartToken()), PartPath(odd, "x1", NewPartToken())}
	others := []string{PartPath(plain, "x1", NewPartToken()), PartPath(odd, "x2", NewPartToken()), odd}
	for _, name := range append(append([]string{}, mine...), others...) {
		if err := os.WriteFile(name, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := filepath.Glob(PartGlob(odd, "x1"))
	slices.Sort(got)
	slices.Sort(mine)
	if err != nil || !slices.Equal(got, mine) {
		t.Fatalf("PartGlob matched %q, want %q (%v)", got, mine, err)
	}
	// IsPartOf, over the directory listed once, takes the same files.
	var taken []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if IsPartOf(e.Name(), odd, "x1") {
			taken = append(taken, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(taken)
	if !slices.Equal(taken, mine) {
		t.Fatalf("IsPartOf took %q, want %q", taken, mine)
	}
	// A transfer ID with a separator (a forged payload) names no file of
	// the directory: its stem's last element would be any "b-".
	if IsPartOf("b-0123456789abcdef.part", odd, "a/b") {
		t.Error(`IsPartOf takes "b-….part" for transfer "a/b"`)
	}
}

func TestWithin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, root, p string
		want          bool
	}{
		{"root itself", "/dest", "/dest", true},
		{"child", "/dest", "/dest/a", true},
		{"grandchild", "/dest", "/dest/a/b/c", true},
		{"child named like parent", "/dest", "/dest/..a", true},
		{"child named dotdot-ish", "/dest", "/dest/...", true},
		{"root with slash", "/dest/", "/dest/a", true},
		{"filesystem root", "/", "/anything/at/all", true},
		{"parent", "/dest", "/", false},
		{"sibling", "/dest", "/other", false},
		{"sibling sharing a prefix", "/dest", "/destination/a", false},
		{"sibling that extends the name", "/dest", "/dest2", false},
		{"traversal", "/dest", "/dest/../etc/passwd", false},
		{"deep traversal", "/dest", "/dest/a/../../etc", false},
		{"relative path against absolute root", "/dest", "dest/a", false},
		{"absolute path against relative root", "dest", "/dest/a", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Within(filepath.FromSlash(tc.root), filepath.FromSlash(tc.p)); got != tc.want {
				t.Errorf("Within(%q, %q) = %v, want %v", tc.root, tc.p, got, tc.want)
			}
		})
	}
}

// FuzzTarget checks the one property that matters for safety: whatever the
// key, a path Target returns for a prefix source, or for a key copied into a
// directory, lies strictly below dest and carries no NUL.
func FuzzTarget(f *testing.F) {
	for _, key := range []string{
		"a.txt", "data/a/b.txt", "../../etc/passwd", "data/../../x", "a//b", "/abs",
		"x\x00y", "ü ñ/ok.txt", "..", ".", "", "dir/", strings.Repeat("n", 256),
	} {
		f.Add(key)
	}
	const dest = "/dest/"
	root := filepath.Clean(dest)
	sources := []Source{{Bucket: "bucket"}, {Bucket: "bucket", Key: "data/"}}
	f.Fuzz(func(t *testing.T, key string) {
		check := func(what, got string, err error) {
			if err != nil {
				if !errors.Is(err, ErrUnsafeKey) {
					t.Fatalf("%s: key %q: error %v does not wrap ErrUnsafeKey", what, key, err)
				}
				return
			}
			if !Within(root, got) || got == root {
				t.Fatalf("%s: key %q lands at %q, not strictly inside %q", what, key, got, root)
			}
			if strings.ContainsRune(got, 0) {
				t.Fatalf("%s: key %q lands at %q, which contains a NUL", what, key, got)
			}
			if got != filepath.Clean(got) {
				t.Fatalf("%s: key %q lands at %q, which is not clean", what, key, got)
			}
		}
		for _, src := range sources {
			got, err := Target(src, key, dest, false)
			check("prefix "+src.String(), got, err)
		}
		// A single key copied into a directory lands under its base name.
		got, err := Target(Source{Bucket: "bucket", Key: "k"}, key, "/dest", true)
		check("single key into dir", got, err)
		if err == nil && filepath.Dir(got) != root {
			t.Fatalf("single key %q into dir lands at %q, not directly in %q", key, got, root)
		}
		// Whatever RelPath accepts is a local path.
		if rel, err := RelPath(key); err == nil && !filepath.IsLocal(rel) {
			t.Fatalf("RelPath(%q) = %q, which is not local", key, rel)
		}
	})
}

// FuzzParseS3URL: whatever the input, ParseS3URL either fails with
// ErrBadURL or returns a source whose URL round-trips and holds no NUL.
func FuzzParseS3URL(f *testing.F) {
	for _, seed := range []string{"s3://bucket/key", "s3://bucket/", "s3://bucket", "s3://b/../../etc", "s3:///x", "http://b/k", "s3://bü/k", "s3://bucket/a\x00b"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		src, err := ParseS3URL(raw)
		if err != nil {
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("ParseS3URL(%q) error %v does not wrap ErrBadURL", raw, err)
			}
			return
		}
		if strings.ContainsRune(src.Bucket+src.Key, 0) || len(src.Bucket) < 3 || len(src.Bucket) > 63 {
			t.Fatalf("ParseS3URL(%q) = %+v", raw, src)
		}
		again, err := ParseS3URL(src.String())
		if err != nil || again != src {
			t.Fatalf("round trip of %q: %+v, %v", raw, again, err)
		}
	})
}
