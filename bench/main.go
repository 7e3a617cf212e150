// Command bench is securechat's load benchmark, `make bench` (docs/design.md §8).
//
// It measures durable 1:1 delivery through the real server binary, run as
// a separate process on loopback: N senders each run a closed loop of
// client.SendText, which returns only once the server has fsynced the
// message into the recipient's mailbox, and N receivers take the pushes and
// ack them. Messages are end-to-end encrypted; before the load, each pair
// starts its session (PQXDH) and answers once, so that the load is made of
// plain Double Ratchet messages, as in a conversation under way. It reports
// delivered messages/s, send → deliver latency and the server's CPU time
// per message, next to a raw quic-go echo baseline of the same shape (N
// clients, one connection and one control stream each, closed loop, frames
// of the same size) run in the same invocation, and the ratio of the two.
// After them come the group case (group.go) and the file phase (file.go):
// encrypted file transfer against a raw quic-go bulk stream (bulk.go), and
// chat latency while transfers run. BENCHMARKS.md records results and how
// to read them.
//
// Usage:
//
//	go run ./bench [-bin bin/securechat] [-clients 64] [-duration 10s] [-warmup 1s] [-size 64] [-json] [-keep]
//	               [-echo=true] [-relay=true] [-ack-delay 0] [-established=true] [-homes DIR] [-server-data DIR]
//	               [-group 500] [-group-messages 20] [-file 50MiB] [-file-runs 5] [-file-messages 200] [-file-byte-rate 0]
//	               [-cpuprofile FILE] [-perf FILE] [-file-cpuprofile FILE] [-file-perf FILE]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/securechat/securechat/appliance"
)

// options are the command-line flags.
type options struct {
	bin      string
	clients  int
	duration time.Duration
	warmup   time.Duration
	size     int
	json     bool
	keep     bool
	ackDelay time.Duration
	echo     bool // run the echo baseline
	relay    bool // run the relay baseline
	// established: every pair's session is started and confirmed before
	// the load; if not, every message carries the PQXDH header.
	established bool
	homes       string     // -homes: parent of the client homes; "" is the temp dir
	serverData  string     // -server-data: parent of the server's data; "" is the temp dir
	prof        profiler   // -cpuprofile, -perf: over the securechat window
	fileProf    profiler   // -file-cpuprofile, -file-perf: over the file phase's timed transfers
	stderr      io.Writer  // progress and the subprocesses' logs
	bodies      sendBodies // Send body sizes for o.text (payload.go)
	// group is the large group's size in the group case (group.go), 0 to
	// skip it; groupMessages the texts sent to each group.
	group         int
	groupMessages int
	// file is the file phase's file size in bytes (file.go), 0 to skip
	// it; fileMessages the chat messages sent without and during transfers.
	file         int64
	fileRuns     int
	fileMessages int
	// fileByteRate, if not 0, is the file server's byte_rate (bytes/s per
	// account, blob bytes in a bucket of their own): transfers paced.
	fileByteRate int64
}

// sendBody is the size of the Send body of one message of the load, which
// the echo clients send too.
func (o *options) sendBody() int {
	if o.established {
		return o.bodies.Established
	}
	return o.bodies.Initial
}

// window is the measured interval of a phase whose load started at start.
func (o *options) window(start time.Duration) window {
	return window{begin: start + o.warmup, end: start + o.warmup + o.duration}
}

// errUsage marks a bad command line (exit status 2).
var errUsage = errors.New("usage")

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{stderr: stderr}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.bin, "bin", "bin/securechat", "securechat `binary` to run as the server")
	fs.IntVar(&o.clients, "clients", 64, "concurrent senders (and as many receivers; echo clients)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured window of each phase")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "load before the window, not measured")
	fs.IntVar(&o.size, "size", 64, "message text size in `bytes`")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of the table")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (server data, client homes)")
	fs.DurationVar(&o.ackDelay, "ack-delay", 0, "receivers collect messages for this long before acking them together (0: ack what is queued at once)")
	fs.BoolVar(&o.relay, "relay", true, "run the relay baseline (raw quic-go, securechat's four frames per message on two connections, nothing stored) after the echo baseline")
	fs.BoolVar(&o.echo, "echo", true, "run the echo baseline first (false: securechat alone, no ratio; for comparing securechat variants quickly)")
	fs.BoolVar(&o.established, "established", true, "start and confirm every pair's end-to-end session before the load, so that it sends plain ratchet messages; false: every message carries the ~1.3 KB PQXDH header, as a first contact that is never answered")
	fs.StringVar(&o.homes, "homes", defaultHomes(), "put the client homes in a temporary directory under `dir`; \"\" puts them next to the server's data")
	fs.StringVar(&o.serverData, "server-data", "", "put the server's data in a temporary directory under `dir` (e.g. /dev/shm: no disk fsync); \"\" is the bench's temporary directory")
	fs.StringVar(&o.prof.clientOut, "cpuprofile", "", "write a pprof CPU profile of the bench process (the clients) over the securechat window to `file`")
	fs.StringVar(&o.prof.serverOut, "perf", "", "record the server process with `perf record -g` over the securechat window into `file` (perf.data)")
	fs.StringVar(&o.fileProf.clientOut, "file-cpuprofile", "", "write a pprof CPU profile of the bench process over the file phase's securechat uploads and downloads to `file`")
	fs.StringVar(&o.fileProf.serverOut, "file-perf", "", "record the file phase's server with `perf record -g` over its uploads and downloads into `file` (perf.data)")
	fs.IntVar(&o.group, "group", 500, "members of the large group in the group case (0: skip it)")
	fs.IntVar(&o.groupMessages, "group-messages", 20, "texts the group case sends to each group")
	o.file = defaultFileSize
	fs.Func("file", "file `size` of the file phase (65536, 512KiB, 50MiB; MB is taken as MiB, as the server's settings do; 0: skip it) (default 50MiB)", func(v string) error {
		n, err := appliance.ParseSize(v)
		if err != nil {
			return err
		}
		o.file = int64(n)
		return nil
	})
	fs.Func("file-byte-rate", "pace the file phase's transfers: the file server's byte_rate in `bytes` per second per account (25MiB), with a byte_burst of 1MiB; the throughput figures then measure the pace (default: lifted)", func(v string) error {
		n, err := appliance.ParseSize(v)
		if err != nil {
			return err
		}
		o.fileByteRate = int64(n)
		return nil
	})
	fs.IntVar(&o.fileRuns, "file-runs", 5, "times the file phase times each transfer, raw and securechat, up and down (the median counts)")
	fs.IntVar(&o.fileMessages, "file-messages", 200, "chat messages the file phase sends without a transfer, and as many during transfers")
	if err := fs.Parse(args); err != nil {
		return nil, errUsage
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case o.clients < 1 || o.clients > 999:
		return nil, fmt.Errorf("%w: -clients must be between 1 and 999", errUsage)
	case o.duration <= 0 || o.warmup < 0 || o.ackDelay < 0:
		return nil, fmt.Errorf("%w: -duration must be positive, -warmup and -ack-delay not negative", errUsage)
	case o.size < 1 || o.size > 60<<10:
		return nil, fmt.Errorf("%w: -size must be between 1 and 61440", errUsage)
	case o.group != 0 && (o.group < groupSmall || o.group > 1000):
		return nil, fmt.Errorf("%w: -group must be 0 or between %d and 1000", errUsage, groupSmall)
	case o.groupMessages < 1:
		return nil, fmt.Errorf("%w: -group-messages must be positive", errUsage)
	case o.file < 0 || o.file > maxFileSize:
		return nil, fmt.Errorf("%w: -file must be between 0 and %s", errUsage, appliance.FormatSize(maxFileSize))
	case o.fileByteRate < 0 || o.fileByteRate > 1e15:
		return nil, fmt.Errorf("%w: -file-byte-rate must be between 0 and 1e15", errUsage)
	case o.fileRuns < 1 || o.fileRuns > 100:
		return nil, fmt.Errorf("%w: -file-runs must be between 1 and 100", errUsage)
	case o.fileMessages < 1:
		return nil, fmt.Errorf("%w: -file-messages must be positive", errUsage)
	}
	return o, nil
}

// The file phase's default file size, and the largest: the phase keeps
// four copies of it on the homes' file system (tmpfs by default).
const (
	defaultFileSize = 50 << 20
	maxFileSize     = 1 << 30
)

// baselineServers are the hidden first arguments that make this program
// one of the baselines' servers, which the bench starts as subprocesses.
var baselineServers = map[string]func(stdin io.Reader, stdout io.Writer) error{
	echoServerArg:  runEchoServer,
	relayServerArg: runRelayServer,
	bulkServerArg:  runBulkServer,
}

// serveBaseline runs this process as the baseline server args name, if
// they do, and exits.
func serveBaseline(args []string) {
	if len(args) < 2 || baselineServers[args[1]] == nil {
		return
	}
	if err := baselineServers[args[1]](os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", args[1], err)
		os.Exit(1)
	}
	os.Exit(0)
}

func main() {
	serveBaseline(os.Args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		if err != errUsage {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(2)
	case interrupted:
		fmt.Fprintln(os.Stderr, "bench: interrupted")
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run is the whole benchmark: the echo baseline, then securechat, then the
// report. Subprocesses and the temporary directory are gone when it returns.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if _, err := os.Stat(o.bin); err != nil {
		return fmt.Errorf("server binary %s: %w (run make build, or pass -bin)", o.bin, err)
	}
	if o.bodies, err = sendBodySizes(o.text(0), receiverName(0)); err != nil {
		return fmt.Errorf("size the Send frame: %w", err)
	}
	dir, err := os.MkdirTemp("", "securechat-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		defer fmt.Fprintf(stderr, "bench: kept %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	progress := func(format string, args ...any) {
		fmt.Fprintf(stderr, "bench: "+format+"\n", args...)
	}

	var echo result
	if o.echo {
		progress("echo baseline: %d clients, %v warm-up, %v window", o.clients, o.warmup, o.duration)
		if echo, err = echoPhase(ctx, o, stderr); err != nil {
			return fmt.Errorf("echo baseline: %w", err)
		}
	}
	var relay result
	if o.relay {
		progress("relay baseline: %d pairs, %v warm-up, %v window", o.clients, o.warmup, o.duration)
		if relay, err = relayPhase(ctx, o, stderr); err != nil {
			return fmt.Errorf("relay baseline: %w", err)
		}
	}
	progress("securechat: starting %s, registering %d users", o.bin, 2*o.clients)
	sc, err := securechatPhase(ctx, o, dir, stderr, progress)
	if err != nil {
		return fmt.Errorf("securechat: %w", err)
	}
	r := newReport(o, echo, relay, sc)
	if o.group > 0 {
		progress("group: registering %d members", o.group)
		if r.Group, err = groupPhase(ctx, o, dir, stderr, progress); err != nil {
			return fmt.Errorf("group case: %w", err)
		}
	}
	if o.file > 0 {
		s := &scratch{o: o, dir: dir}
		r.File, err = filePhase(ctx, o, s, progress)
		s.close()
		if err != nil {
			return fmt.Errorf("file phase: %w", err)
		}
	}
	if o.json {
		return r.writeJSON(stdout)
	}
	return r.writeTable(stdout)
}

func echoPhase(ctx context.Context, o *options, stderr io.Writer) (result, error) {
	srv, addr, fp, err := startEchoServer(ctx, stderr)
	if err != nil {
		return result{}, err
	}
	defer srv.stop()
	return runEcho(ctx, o, addr, fp, srv)
}

func relayPhase(ctx context.Context, o *options, stderr io.Writer) (result, error) {
	srv, addr, fp, err := startBaselineServer(ctx, stderr, relayServerArg)
	if err != nil {
		return result{}, err
	}
	defer srv.stop()
	return runRelay(ctx, o, addr, fp, srv)
}

// scratch hands a phase its directories: for the server's data and the
// client homes, each in the bench's temporary directory or, with
// -server-data or -homes, in a temporary directory of its own under that
// parent, removed by close unless -keep.
type scratch struct {
	o       *options
	dir     string // the bench's temporary directory
	cleanup []func()
}

// subdir is name under s.dir, or a new temporary directory under parent
// when that is set.
func (s *scratch) subdir(parent, name string) (string, error) {
	if parent == "" {
		return filepath.Join(s.dir, name), nil
	}
	d, err := os.MkdirTemp(parent, "securechat-bench-"+name+"-")
	if err != nil {
		return "", err
	}
	if s.o.keep {
		s.cleanup = append(s.cleanup, func() { fmt.Fprintf(s.o.stderr, "bench: kept %s\n", d) })
	} else {
		s.cleanup = append(s.cleanup, func() { os.RemoveAll(d) })
	}
	return d, nil
}

func (s *scratch) close() {
	for _, f := range s.cleanup {
		f()
	}
}

func securechatPhase(ctx context.Context, o *options, dir string, stderr io.Writer, progress func(string, ...any)) (result, error) {
	s := &scratch{o: o, dir: dir}
	defer s.close()
	data, err := s.subdir(o.serverData, "server")
	if err != nil {
		return result{}, err
	}
	homes, err := s.subdir(o.homes, "homes")
	if err != nil {
		return result{}, err
	}
	srv, addr, fp, err := startServer(ctx, o.bin, data, stderr)
	if err != nil {
		return result{}, err
	}
	defer srv.stop()
	t := time.Now()
	a, err := registerAccounts(ctx, homes, addr, fp, o.clients)
	if err != nil {
		return result{}, err
	}
	defer a.close()
	progress("securechat: registered in %v; server data on %s, client homes on %s",
		time.Since(t).Round(time.Millisecond), describeFS(data), describeFS(homes))
	res, err := runSecurechat(ctx, o, a, srv, progress)
	res.ServerData, res.Homes = describeFS(data), describeFS(homes)
	if err == nil {
		if done, perr := srv.exited(); done {
			err = perr // the server must survive the load
		}
	}
	return res, err
}

// defaultHomes keeps the client homes off the server's disk when tmpfs is
// there: in a deployment every client fsyncs its own device, so 128 homes
// sharing the server's journal would measure this machine's disk, not the
// server (BENCHMARKS.md).
func defaultHomes() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return ""
}
