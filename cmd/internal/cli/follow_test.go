package cli

import (
	"testing"

	"github.com/s3fleet/s3fleet"
)

// TestEscaped: a key that would forge a line of human output (a newline,
// a tab between columns, a terminal escape) or is not UTF-8 is shown
// quoted; an ordinary one, spaces and non-ASCII letters included, as it is.
func TestEscaped(t *testing.T) {
	for in, want := range map[string]string{
		"s3://b/logs/2026 día 1.txt":                 "s3://b/logs/2026 día 1.txt",
		"s3://b/k\nfailed s3://b/other: forged line": `"s3://b/k\nfailed s3://b/other: forged line"`,
		"s3://b/a\tb":       `"s3://b/a\tb"`,
		"s3://b/\x1b[2Jclr": `"s3://b/\x1b[2Jclr"`,
		"s3://b/\xff":       `"s3://b/\xff"`,
		"":                  "",
	} {
		if got := escaped(in); got != want {
			t.Errorf("escaped(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestMoved: the summary line says what a job did with its bytes.
func TestMoved(t *testing.T) {
	for _, c := range []struct{ src, dst, want string }{
		{"s3://b/p/", "/data/out/", "downloaded"},
		{"s3://b/p/ (and 2 more)", "/data/out/", "downloaded"},
		{"s3://b/p/", "r2://archive/p/", "copied"},
		{"/data/out/", "s3://b/up/", "uploaded"},
		{"s3://b/tmp/", "", "deleted"},
	} {
		if got := moved(s3fleet.JobStatus{Source: c.src, Dest: c.dst}); got != c.want {
			t.Errorf("%s to %q: %q, want %q", c.src, c.dst, got, c.want)
		}
	}
}
