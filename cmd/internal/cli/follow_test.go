package cli

import "testing"

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
