package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// spec says how to start a child process.
type spec struct {
	name string
	bin  string
	args []string
	env  []string // nil: the suite's own
	dir  string   // working directory; empty: the suite's
	log  string   // file receiving stdout and stderr
}

// command is the exec.Cmd of a spec, in its own process group (so a
// Ctrl-C reaches the suite alone, which then stops its children) and
// killed by the kernel if the suite dies first. The caller closes the log.
func (s spec) command() (*exec.Cmd, *os.File, error) {
	if err := os.MkdirAll(filepath.Dir(s.log), 0o755); err != nil {
		return nil, nil, err
	}
	logf, err := os.Create(s.log)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Env, cmd.Dir = s.env, s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd, logf, nil
}

// process is a running child.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once it has exited
	err     error         // Wait's result, set before done is closed
}

func startProcess(s spec) (*process, error) {
	cmd, logf, err := s.command()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	p := &process{name: s.name, logPath: s.log, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// terminate sends SIGTERM unless the process has exited.
func (p *process) terminate() {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
}

// stop sends SIGTERM and waits for the exit, killing the process after
// grace. It returns the exit's error: nil for a clean exit with status 0.
func (p *process) stop(grace time.Duration) error {
	p.terminate()
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("still running %s after SIGTERM, killed", grace)
	}
}

// logTail is the end of the process's log, ready to append to an error
// message, or "" when the log is empty.
func (p *process) logTail() string { return logTail(p.name, p.logPath) }

func logTail(name, path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	const limit = 2000
	if len(b) > limit {
		b = b[len(b)-limit:]
	}
	return fmt.Sprintf("\n--- %s log (%s), tail ---\n%s", name, path, b)
}

// userHZ is the unit of the CPU times in /proc/PID/stat: 100 on Linux,
// whatever the kernel's own tick.
const userHZ = 100

// cpuUse is CPU time in user space and in the kernel.
type cpuUse struct{ user, sys time.Duration }

func (c cpuUse) total() time.Duration { return c.user + c.sys }

func (c cpuUse) add(d cpuUse) cpuUse { return cpuUse{c.user + d.user, c.sys + d.sys} }

func (c cpuUse) sub(d cpuUse) cpuUse { return cpuUse{c.user - d.user, c.sys - d.sys} }

// statFields returns the fields of /proc/PID/stat after the command name,
// which is in parentheses and may hold spaces: fields[0] is the state
// (field 3), fields[1] the parent (4), fields[11] and fields[12] utime and
// stime (14 and 15).
func statFields(pid string) ([]string, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil, err
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:]), nil
}

// cpuTime returns the CPU time a process has used so far.
func cpuTime(pid int) (cpuUse, error) {
	fields, err := statFields(strconv.Itoa(pid))
	if err != nil {
		return cpuUse{}, fmt.Errorf("read CPU time of %d (did it exit?): %w", pid, err)
	}
	if len(fields) < 13 {
		return cpuUse{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var ticks [2]int64
	for i, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return cpuUse{}, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
		}
		ticks[i] = n
	}
	return cpuUse{time.Duration(ticks[0]) * time.Second / userHZ, time.Duration(ticks[1]) * time.Second / userHZ}, nil
}

// cpuTimes is cpuTime of each process.
func cpuTimes(ps []*process) ([]cpuUse, error) {
	out := make([]cpuUse, len(ps))
	for i, p := range ps {
		t, err := cpuTime(p.pid())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		out[i] = t
	}
	return out, nil
}

// peakRSS returns a process's peak resident set size (VmHWM) in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read peak RSS of %d (did it exit?): %w", pid, err)
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse VmHWM %q: %w", strings.TrimSpace(line), err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmHWM in /proc/PID/status")
}

// resetPeakRSS makes a process's VmHWM its current RSS, so that a
// long-running server's peak can be read per run.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// treeSampler follows the peak RSS of a process and all its descendants
// (s3transfer's process pool) by reading /proc every interval: the
// kernel here has no /proc/PID/task/TID/children, so it scans every PID's
// parent.
type treeSampler struct {
	root  int
	peaks map[int]int64
	stop  chan struct{}
	done  chan struct{}
}

func sampleTree(root int, every time.Duration) *treeSampler {
	t := &treeSampler{root: root, peaks: map[int]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(t.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			t.sample()
			select {
			case <-t.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return t
}

func (t *treeSampler) sample() {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	parent := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fields, err := statFields(e.Name())
		if err != nil || len(fields) < 2 {
			continue
		}
		if pp, err := strconv.Atoi(fields[1]); err == nil {
			parent[pid] = pp
		}
	}
	for pid := range parent {
		for p, hops := pid, 0; p > 1 && hops < 16; p, hops = parent[p], hops+1 {
			if p == t.root {
				if hwm, err := peakRSS(pid); err == nil {
					t.peaks[pid] = max(t.peaks[pid], hwm)
				}
				break
			}
		}
	}
}

// finish stops sampling and returns the largest peak of one process, the
// sum of the peaks of all and their count.
func (t *treeSampler) finish() (largest, sum int64, n int) {
	close(t.stop)
	<-t.done
	for _, v := range t.peaks {
		largest = max(largest, v)
		sum += v
	}
	return largest, sum, len(t.peaks)
}

// machineCPU is a snapshot of the whole machine's CPU time: busy (user,
// nice and system time from /proc/stat: not idle, I/O wait, interrupts or
// steal), and the part of it spent by kernel threads (children of
// kthreadd: writeback, the journal, ksoftirqd, …).
type machineCPU struct {
	busy, kthreads time.Duration
}

func machineSnapshot() machineCPU {
	var m machineCPU
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return m
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle …
	if len(f) < 4 || f[0] != "cpu" {
		return m
	}
	var ticks int64
	for _, v := range f[1:4] {
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	m.busy = time.Duration(ticks) * time.Second / userHZ
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return m
	}
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		fields, err := statFields(e.Name())
		if err != nil || len(fields) < 13 || (fields[1] != "2" && e.Name() != "2") {
			continue
		}
		for _, v := range fields[11:13] {
			n, _ := strconv.ParseInt(v, 10, 64)
			m.kthreads += time.Duration(n) * time.Second / userHZ
		}
	}
	return m
}

// selfCPU is the suite's own CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// disturbance splits the machine's busy time between two snapshots, less
// what the run's own processes and servers used: kernel threads (mostly
// the run's own writeback), and everything else (other programs; the
// suite's own time, self, is taken out).
func disturbance(before, after machineCPU, ours, self time.Duration) (kthreads, other time.Duration) {
	kthreads = max(0, after.kthreads-before.kthreads)
	other = max(0, after.busy-before.busy-ours-kthreads-self)
	return kthreads, other
}
