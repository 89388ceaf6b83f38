package faults

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// binDir holds the enqueue and worker binaries the tests run.
var binDir string

func TestMain(m *testing.M) {
	if os.Getenv("S3FLEET_FAULTS") != "1" {
		fmt.Println("faults: set S3FLEET_FAULTS=1 (make test-faults)")
		os.Exit(0)
	}
	for _, a := range os.Args {
		if a == "-test.short=true" || a == "-test.short" {
			fmt.Println("faults: skipped in -short mode")
			os.Exit(0)
		}
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
