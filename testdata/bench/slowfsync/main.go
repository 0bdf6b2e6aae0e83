// Command slowfsync runs a program with every fdatasync and fsync it makes
// held for a fixed time before it runs: a slow-fsync disk, as far as the
// program can tell, for the benchmarks' slow-I/O setting (cmd/bench_test.go,
// .ci/bench-ab). Nothing else the program does is slowed.
//
// Usage: slowfsync [-report-fd N] DELAY PROGRAM [ARG...]
//
// It installs a seccomp filter that hands those two system calls to this
// process (SECCOMP_RET_USER_NOTIF) and starts PROGRAM under it, with the
// same standard streams; it sleeps DELAY for each call, in parallel for
// calls from different threads, then lets the call run
// (SECCOMP_USER_NOTIF_FLAG_CONTINUE). It exits with PROGRAM's status once
// PROGRAM has exited, and passes SIGINT and SIGTERM on to it.
//
// With -report-fd, it writes PROGRAM's wall time in nanoseconds, from
// just before starting it to just after it exited, to that (inherited)
// file descriptor: a benchmark then times PROGRAM and not this process's
// own start, which costs several milliseconds on a machine of this kind.
//
// strace's fault injection did this before, at a price that made the
// setting meaningless: tracing stops the process at every thread it
// creates and every signal it gets, which cost lessor about 30 ms and the
// floor about 20 ms on a machine of this kind with no delay at all, more
// than the delay it was there to add.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	fs := flag.NewFlagSet("slowfsync", flag.ExitOnError)
	reportFD := fs.Int("report-fd", -1, "write PROGRAM's wall time in nanoseconds to this file descriptor")
	fs.Parse(os.Args[1:])
	if fs.NArg() < 2 {
		fmt.Fprintln(os.Stderr, "usage: slowfsync [-report-fd N] DELAY PROGRAM [ARG...]")
		os.Exit(2)
	}
	var report *os.File
	if *reportFD >= 0 {
		unix.CloseOnExec(*reportFD)
		report = os.NewFile(uintptr(*reportFD), "report")
	}
	code, err := run(fs.Arg(0), fs.Arg(1), fs.Args()[2:], report)
	if err != nil {
		fmt.Fprintln(os.Stderr, "slowfsync:", err)
		os.Exit(2)
	}
	os.Exit(code)
}

func run(delay, prog string, args []string, report *os.File) (int, error) {
	d, err := time.ParseDuration(delay)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("delay %q: want a duration such as 5ms", delay)
	}
	// The filter is installed on this thread only, and PROGRAM, forked
	// from this thread, inherits it; this process makes neither call.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("no_new_privs: %w", err)
	}
	listener, err := installFilter()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(prog, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	runtime.UnlockOSThread()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	go supervise(listener, d)
	err = cmd.Wait()
	if report != nil {
		fmt.Fprintf(report, "%d\n", time.Since(start).Nanoseconds())
		report.Close()
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	if _, ok := err.(*exec.ExitError); ok || err == nil {
		return cmd.ProcessState.ExitCode(), nil
	}
	return 0, err
}

// installFilter makes fdatasync and fsync wait for the listener returned;
// every other system call is allowed as usual. Any architecture but
// x86-64 is refused rather than filtered by the wrong numbers.
func installFilter() (*os.File, error) {
	const (
		ldW  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
		arch = 4 // offsetof(struct seccomp_data, arch)
		nr   = 0 // offsetof(struct seccomp_data, nr)
	)
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("only amd64 is supported, not %s", runtime.GOARCH)
	}
	prog := []unix.SockFilter{
		{Code: ldW, K: arch},
		{Code: jeq, Jt: 1, Jf: 0, K: unix.AUDIT_ARCH_X86_64},
		{Code: ret, K: unix.SECCOMP_RET_KILL_PROCESS},
		{Code: ldW, K: nr},
		{Code: jeq, Jt: 2, Jf: 0, K: unix.SYS_FDATASYNC},
		{Code: jeq, Jt: 1, Jf: 0, K: unix.SYS_FSYNC},
		{Code: ret, K: unix.SECCOMP_RET_ALLOW},
		{Code: ret, K: unix.SECCOMP_RET_USER_NOTIF},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	fd, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return nil, fmt.Errorf("seccomp: %w", errno)
	}
	unix.CloseOnExec(int(fd))
	return os.NewFile(fd, "seccomp-listener"), nil
}

// seccompNotif is struct seccomp_notif; seccompNotifResp is struct
// seccomp_notif_resp.
type seccompNotif struct {
	ID    uint64
	PID   uint32
	Flags uint32
	Nr    int32
	Arch  uint32
	IP    uint64
	Args  [6]uint64
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// supervise answers the filter's notifications until no process is left
// under it (the listener then reports POLLHUP) or this one exits.
func supervise(listener *os.File, d time.Duration) {
	fd := int(listener.Fd())
	for {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, 1000); err != nil && err != unix.EINTR {
			return
		}
		if pfd[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
			return
		}
		if pfd[0].Revents&unix.POLLIN == 0 {
			continue
		}
		var req seccompNotif
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&req))); errno != 0 {
			// ENOENT: the caller died before its call was received.
			continue
		}
		go func(id uint64) {
			time.Sleep(d)
			resp := seccompNotifResp{ID: id, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
			unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp)))
		}(req.ID)
	}
}
