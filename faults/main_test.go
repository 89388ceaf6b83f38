package faults

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// binDir holds the enqueue and worker binaries the tests run.
var binDir string

// skipTier, when set, is why the fault suite does not run; each of its
// tests says so with t.Skip (tier), so that go test -v lists them.
var skipTier string

// tier skips a test of the suite when the suite does not run.
func tier(t *testing.T) {
	t.Helper()
	if skipTier != "" {
		t.Skip(skipTier)
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	switch {
	case os.Getenv("S3FLEET_FAULTS") != "1":
		skipTier = "faults: the fault suite runs with S3FLEET_FAULTS=1 (make test-faults)"
	case testing.Short():
		skipTier = "faults: the fault suite does not run with -short"
	}
	if skipTier != "" {
		os.Exit(m.Run()) // no binaries to build
	}
	// S3FLEET_FAULTS_BIN names a directory of prebuilt binaries; by default
	// they are built once from this tree.
	dir := os.Getenv("S3FLEET_FAULTS_BIN")
	if dir == "" {
		tmp, err := os.MkdirTemp("", "s3fleet-faults-bin")
		if err != nil {
			panic(err)
		}
		out, err := exec.Command("go", "build", "-o", tmp, "../cmd/enqueue", "../cmd/worker").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "faults: build binaries: %v\n%s", err, out)
			os.Exit(1)
		}
		dir = tmp
	}
	binDir = dir
	code := m.Run()
	printSummaries()
	if os.Getenv("S3FLEET_FAULTS_BIN") == "" {
		os.RemoveAll(dir) // built here: os.Exit skips deferred calls
	}
	os.Exit(code)
}

// summaries are one line per test, printed together at the end of the run
// whatever -v says.
var summaries struct {
	sync.Mutex
	lines []string
}

// summary logs the test's one-line result and keeps it for the end of run.
func summary(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf("%-40s %s", t.Name(), fmt.Sprintf(format, args...))
	t.Log("SUMMARY " + line)
	summaries.Lock()
	summaries.lines = append(summaries.lines, line)
	summaries.Unlock()
}

func printSummaries() {
	summaries.Lock()
	defer summaries.Unlock()
	if len(summaries.lines) == 0 {
		return
	}
	fmt.Println("faults: summary")
	fmt.Println("  " + strings.Join(summaries.lines, "\n  "))
}
