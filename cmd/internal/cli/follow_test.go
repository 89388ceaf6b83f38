package cli

import (
	"testing"
	"time"
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

// TestPollEvery: a follower reads fast at first and slows with the job.
func TestPollEvery(t *testing.T) {
	for _, tc := range []struct{ followed, want time.Duration }{
		{0, 50 * time.Millisecond}, {time.Second, 50 * time.Millisecond}, {4 * time.Second, 200 * time.Millisecond},
		{10 * time.Second, 500 * time.Millisecond}, {time.Hour, 500 * time.Millisecond},
	} {
		if got := pollEvery(tc.followed); got != tc.want {
			t.Errorf("pollEvery(%v) = %v, want %v", tc.followed, got, tc.want)
		}
	}
}
