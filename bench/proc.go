package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is sysconf(_SC_CLK_TCK), the unit of utime and stime in
// /proc/PID/stat. It is 100 on every Linux architecture Go supports; reading
// it properly needs cgo.
const clockTicks = 100

// stopTimeout is how long a subprocess gets to exit after SIGTERM.
const stopTimeout = 10 * time.Second

// proc is a subprocess the bench started: the securechat server or the echo
// server. stop ends it; it is safe to call more than once.
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.Closer     // if set, closing it asks the process to exit
	done  chan struct{} // closed when the process has exited
	err   error         // Wait's result, set before done is closed

	stopOnce sync.Once
}

// startProc starts cmd with its stderr copied to ours, each line prefixed by
// name, so that the server's warnings show up next to the bench's output.
func startProc(name string, cmd *exec.Cmd, stderr io.Writer) (*proc, error) {
	cmd.Stderr = &prefixWriter{prefix: name + ": ", w: stderr}
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// pid is the process id, for /proc.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		if p.err == nil {
			return true, fmt.Errorf("%s exited early", p.name)
		}
		return true, fmt.Errorf("%s exited early: %w", p.name, p.err)
	default:
		return false, nil
	}
}

// stop asks the process to shut down gracefully and kills it if it does
// not within stopTimeout.
func (p *proc) stop() {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		if p.stdin != nil {
			p.stdin.Close()
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// unlimited lifts the server's abuse limits (appliance.Config), which are
// per account and per source address: the bench is 2N accounts sending as
// fast as they can from one address. The limiters still run, as in any
// deployment; they just never refuse.
var unlimited = []string{
	"--message-rate", "1e9", "--message-burst", "1000000000",
	"--byte-rate", "1e15", "--byte-burst", "1000000000000000",
	"--conn-rate", "1e6", "--conn-burst", "1000000",
	"--register-rate", "1e6", "--register-burst", "1000000",
	"--ack-rate", "1e9", "--ack-burst", "1000000000",
	"--max-conns-per-address", "1000000", "--max-conns-per-account", "1000000",
}

// startServer runs `securechat serve` on a free loopback port with its data
// in dataDir, and waits until it has written its listen address. It returns
// the address and the server key's fingerprint.
func startServer(ctx context.Context, bin, dataDir string, stderr io.Writer, extra ...string) (*proc, string, string, error) {
	args := []string{"serve",
		"--listen", "127.0.0.1:0",
		"--admin", "127.0.0.1:0",
		"--data", dataDir,
		"--log-level", "warn"}
	cmd := exec.Command(bin, append(append(args, unlimited...), extra...)...)
	cmd.Stdout = io.Discard // the banner; the files below say the same
	p, err := startProc("server", cmd, stderr)
	if err != nil {
		return nil, "", "", err
	}
	addrFile := filepath.Join(dataDir, "listen.addr")
	fpFile := filepath.Join(dataDir, "server.fingerprint")
	deadline := time.Now().Add(15 * time.Second)
	for {
		if b, err := os.ReadFile(addrFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			fp, err := os.ReadFile(fpFile)
			if err != nil {
				p.stop()
				return nil, "", "", fmt.Errorf("server fingerprint: %w", err)
			}
			return p, strings.TrimSpace(string(b)), strings.TrimSpace(string(fp)), nil
		}
		if done, err := p.exited(); done {
			return nil, "", "", err
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, "", "", fmt.Errorf("server did not write %s within 15s", addrFile)
		}
		select {
		case <-ctx.Done():
			p.stop()
			return nil, "", "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startEchoServer re-executes this program as the echo server (echo.go) and
// reads the address and fingerprint it prints.
func startEchoServer(ctx context.Context, stderr io.Writer) (*proc, string, string, error) {
	return startBaselineServer(ctx, stderr, echoServerArg)
}

// startBaselineServer re-executes this program with arg (the echo or the
// relay server) and reads the address and fingerprint it prints.
func startBaselineServer(ctx context.Context, stderr io.Writer, arg string) (*proc, string, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", "", fmt.Errorf("locate own executable: %w", err)
	}
	cmd := exec.Command(self, arg)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", "", err
	}
	// The echo server exits when its stdin closes, so it cannot outlive
	// the bench even if the bench is killed.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", "", err
	}
	p, err := startProc(arg, cmd, stderr)
	if err != nil {
		return nil, "", "", err
	}
	p.stdin = stdin
	type hello struct {
		line string
		err  error
	}
	ch := make(chan hello, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		ch <- hello{line, err}
		io.Copy(io.Discard, out)
	}()
	select {
	case h := <-ch:
		f := strings.Fields(h.line)
		if h.err != nil || len(f) != 2 {
			p.stop()
			return nil, "", "", fmt.Errorf("%s printed %q, want ADDR FINGERPRINT", arg, h.line)
		}
		return p, f[0], f[1], nil
	case <-time.After(15 * time.Second):
		p.stop()
		return nil, "", "", fmt.Errorf("%s did not start within 15s", arg)
	case <-ctx.Done():
		p.stop()
		return nil, "", "", ctx.Err()
	}
}

// procCPU returns the user+system CPU time of process pid ("self" for this
// one) from /proc/PID/stat, proc(5).
func procCPU(pid string) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read CPU time: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// fields are counted after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/" + pid + "/stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so utime (14) and stime (15) are f[11], f[12].
	if len(f) < 13 {
		return 0, errors.New("malformed /proc/" + pid + "/stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc/" + pid + "/stat")
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// sampleCPU reads the CPU time of the server process and of the bench, and
// the loopback interface's byte count.
func sampleCPU(server *proc) (cpuSample, error) {
	s, err := procCPU(strconv.Itoa(server.pid()))
	if err != nil {
		return cpuSample{}, err
	}
	self, err := procCPU("self")
	return cpuSample{server: s, self: self, all: machineCPU(), loopback: loopbackBytes()}, err
}

// machineCPU is the CPU time spent by all processes and the kernel since
// boot, all CPUs together: the busy fields of the cpu line of /proc/stat
// (proc(5)), or -1.
func machineCPU() time.Duration { return statCPU(1, 2, 3, 6, 7) }

// machineSteal is the time the hypervisor ran something else while this
// machine's CPUs had work, since boot, all CPUs together: the steal field
// of /proc/stat, or -1. Other guests on the same host take it; it slows
// the bench without showing as any process's CPU.
func machineSteal() time.Duration { return statCPU(8) }

// statCPU sums fields of the cpu line of /proc/stat, or is -1.
func statCPU(fields ...int) time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	// cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return -1
	}
	var sum int64
	for _, i := range fields {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return -1
		}
		sum += v
	}
	return time.Duration(sum) * time.Second / clockTicks
}

// loopbackBytes is the count of bytes received on Linux's loopback
// interface (every packet between the clients and the server, both ways,
// and whatever else the machine sends itself), or -1.
func loopbackBytes() int64 {
	b, err := os.ReadFile("/sys/class/net/lo/statistics/rx_bytes")
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// prefixWriter writes each line to w with a prefix.
type prefixWriter struct {
	prefix string
	w      io.Writer

	mu      sync.Mutex
	partial []byte
}

func (pw *prefixWriter) Write(b []byte) (int, error) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.partial = append(pw.partial, b...)
	for {
		i := bytes.IndexByte(pw.partial, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(pw.w, "%s%s\n", pw.prefix, pw.partial[:i])
		pw.partial = pw.partial[i+1:]
	}
	return len(b), nil
}
