package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Restart stops the server with sig (SIGKILL for a crash, SIGTERM for a
// clean stop), keeps it down for down, then starts it again with the same
// command line (same port, same data directory) and waits until it accepts
// connections. It returns how long the server did not answer.
func (p *Process) Restart(t testing.TB, sig os.Signal, down time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", p.Cmd.Path, err)
	}
	_ = p.Cmd.Wait()
	time.Sleep(down)
	cmd := exec.Command(p.Cmd.Path, p.Cmd.Args[1:]...)
	cmd.Env = p.Cmd.Env
	cmd.Stdout, cmd.Stderr = p.Cmd.Stdout, p.Cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("restart %s: %v", p.Cmd.Path, err)
	}
	p.Cmd = cmd
	if err := waitListening(p.Addr, 20*time.Second); err != nil {
		t.Fatalf("%s did not listen again on %s: %v\n%s", cmd.Path, p.Addr, err, p.Log.String())
	}
	return time.Since(began)
}

// Pause freezes the server (SIGSTOP) for d, then lets it go on (SIGCONT):
// its port stays open, yet nothing answers. The server is resumed when the
// test ends even if the test fails meanwhile.
func (p *Process) Pause(t testing.TB, d time.Duration) {
	t.Helper()
	pid := p.Cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %d: %v", pid, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	time.Sleep(d)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT %d: %v", pid, err)
	}
}

// waitListening waits until addr accepts TCP connections.
func waitListening(addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening after %s: %w", limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
