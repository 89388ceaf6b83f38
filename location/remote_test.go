package location

import (
	"errors"
	"strings"
	"testing"
)

func TestParseURLRemotes(t *testing.T) {
	remotes := []string{"minio", "r2"}
	got, err := ParseURL("minio://dst/a//b c", remotes)
	if err != nil || got != (Source{Remote: "minio", Bucket: "dst", Key: "a//b c"}) {
		t.Fatalf("ParseURL(minio://…) = %+v, %v", got, err)
	}
	if got.String() != "minio://dst/a//b c" {
		t.Errorf("String() = %q", got.String())
	}
	if got, err := ParseURL("s3://src/k", remotes); err != nil || got.Remote != "" {
		t.Errorf("s3:// = %+v, %v: want the top-level endpoint", got, err)
	}
	_, err = ParseURL("dst://out/x", remotes)
	if !errors.Is(err, ErrUnknownRemote) || !strings.Contains(err.Error(), "minio, r2") {
		t.Errorf("unknown remote: %v, want ErrUnknownRemote listing minio, r2", err)
	}
	if _, err := ParseURL("dst://out/x", nil); err == nil || !strings.Contains(err.Error(), "no remotes are configured") {
		t.Errorf("unknown remote, none configured: %v", err)
	}
	if _, err := ParseURL("s3://b1/"+strings.Repeat("k", MaxKeyLen+1), nil); !errors.Is(err, ErrBadURL) {
		t.Errorf("1025-byte key: %v, want ErrBadURL", err)
	}
}

func TestIsURL(t *testing.T) {
	for raw, want := range map[string]bool{
		"s3://b/k": true, "minio://bbb/k": true, "dst://out/x": true, "/data/x": false, "dst:": false,
		"rel/dir/": false, "Upper://b/k": true, "S3://b/k": true, "my_r2://b": true, "./x://y": false, "://x": false,
	} {
		if got := IsURL(raw); got != want {
			t.Errorf("IsURL(%q) = %v, want %v", raw, got, want)
		}
	}
}

func TestParseDest(t *testing.T) {
	if p, _, isObj, err := ParseDest("/data/out/f"); err != nil || isObj || p != "/data/out/f" {
		t.Errorf("path: %q %v %v", p, isObj, err)
	}
	if _, o, isObj, err := ParseDest("minio://dst/k/x"); err != nil || !isObj || o.Remote != "minio" || o.Key != "k/x" {
		t.Errorf("object: %+v %v %v", o, isObj, err)
	}
	for _, bad := range []string{"rel/x", "/a/../b", "minio://dst/", "s3://dst", "S3://b/k"} {
		if _, _, _, err := ParseDest(bad); err == nil {
			t.Errorf("ParseDest(%q): no error", bad)
		}
	}
}

func TestTargetKey(t *testing.T) {
	tests := []struct {
		src, key, dest, want string
	}{
		{"s3://aaa/p/", "p/x/y", "minio://bbb/q/", "q/x/y"},
		{"s3://aaa/p/", "p/x//y", "minio://bbb/", "x//y"},
		{"s3://aaa/", "p/x", "minio://bbb/q/", "q/p/x"},
		{"s3://aaa/p/x", "p/x", "minio://bbb/q/", "q/x"},
		{"s3://aaa/p/x", "p/x", "minio://bbb/q/renamed", "q/renamed"},
		{"s3://aaa/p/x", "p/x", "minio://bbb", "x"},
	}
	for _, tc := range tests {
		src, _ := ParseURL(tc.src, []string{"minio"})
		dest, _ := ParseURL(tc.dest, []string{"minio"})
		got, err := TargetKey(src, tc.key, dest)
		if err != nil || got != tc.want {
			t.Errorf("TargetKey(%s, %q, %s) = %q, %v; want %q", tc.src, tc.key, tc.dest, got, err, tc.want)
		}
	}
	src, _ := ParseURL("s3://aaa/p/", nil)
	dest, _ := ParseURL("minio://bbb/file", []string{"minio"})
	if _, err := TargetKey(src, "p/x", dest); err == nil {
		t.Error("prefix to a single key: no error")
	}
	long, _ := ParseURL("minio://bbb/"+strings.Repeat("d", 1000)+"/", []string{"minio"})
	if _, err := TargetKey(src, "p/"+strings.Repeat("k", 30), long); !errors.Is(err, ErrUnsafeKey) {
		t.Errorf("over-long destination key: %v", err)
	}
}

func TestPrefixes(t *testing.T) {
	p, err := NewPrefixes("allow_write", []string{"minio://dst/out/", "s3://whole"}, []string{"minio"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := range []Source{{Remote: "minio", Bucket: "dst", Key: "out/x"}, {Bucket: "whole", Key: "any/key"}} {
		if err := p.Check(ok); err != nil {
			t.Errorf("Check(%s): %v", ok, err)
		}
	}
	for _, bad := range []Source{{Remote: "minio", Bucket: "dst", Key: "other/x"}, {Bucket: "dst", Key: "out/x"}, {Remote: "minio", Bucket: "whole", Key: "k"}} {
		if err := p.Check(bad); !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), "allow_write") {
			t.Errorf("Check(%s): %v, want ErrNotAllowed naming allow_write", bad, err)
		}
	}
	if err := p.Check(Source{Remote: "minio", Bucket: "dst", Key: "out/../etc/x"}); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("a .. segment got past the list: %v", err)
	}
	if _, err := NewPrefixes("allow_write", []string{"minio://dst/logs"}, []string{"minio"}); err == nil {
		t.Error("an entry without its trailing / was taken")
	}
	if _, err := ParseURL("S3://b1b/k", nil); !errors.Is(err, ErrUnknownRemote) {
		t.Errorf("S3:// (upper case): %v", err)
	}
	var empty Prefixes
	if err := empty.Check(Source{Bucket: "b", Key: "k"}); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("an empty list allowed a write: %v", err)
	}
	if _, err := NewPrefixes("allow_read", []string{"r9://b/"}, nil); !errors.Is(err, ErrUnknownRemote) {
		t.Errorf("unknown remote: %v", err)
	}
}
