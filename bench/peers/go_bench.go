// go_bench.go - the Go peer: os/exec with one goroutine per child calling
// Wait, the model evmon replaces (each blocked Wait holds an OS thread in
// wait4/waitid). Commands and output as for every harness (bench/harness/common.h).
// Children inherit our stdio, like in every harness. The thread limit is
// left at Go's default, as a user would have it.
package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

var child string

func raiseNofile() {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
}

func die(what string, err error) {
	fmt.Fprintf(os.Stderr, "bench: go: %s: %v\n", what, err)
	os.Exit(2)
}

func command(mode string, stdin, stdout *os.File) *exec.Cmd {
	var c *exec.Cmd
	if mode == "" {
		c = exec.Command(child)
	} else {
		c = exec.Command(child, mode)
	}
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, os.Stderr
	return c
}

func monoNs() int64 {
	var ts syscall.Timespec
	// CLOCK_MONOTONIC, the clock the children stamp with
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Sec*1e9 + ts.Nsec
}

type seen struct{ pid, ns int64 }

func cmdSpawn(runs, inflight int) {
	sem := make(chan struct{}, inflight)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < runs; i++ {
		sem <- struct{}{}
		c := command("", os.Stdin, os.Stdout)
		if err := c.Start(); err != nil {
			die("start "+child, err)
		}
		wg.Add(1)
		go func() {
			c.Wait()
			<-sem
			wg.Done()
		}()
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	fmt.Printf("ok runs=%d secs=%.6f per_sec=%.1f\n", runs, secs, float64(runs)/secs)
}

func cmdScale(n int) {
	cmds := make([]*exec.Cmd, 0, n)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < n; i++ {
		c := command("p", os.Stdin, os.Stdout)
		if err := c.Start(); err != nil {
			die(fmt.Sprintf("start %s (child %d)", child, i), err)
		}
		cmds = append(cmds, c)
		wg.Add(1)
		go func() { c.Wait(); wg.Done() }()
	}
	secs := time.Since(t0).Seconds()
	per := 0.0
	if n > 0 {
		per = secs * 1e6 / float64(n)
	}
	fmt.Printf("ready launched=%d launch_secs=%.6f launch_us_per_child=%.3f\n", n, secs, per)
	os.Stdout.Sync()
	io.Copy(io.Discard, os.Stdin) // idle until the runner closes stdin
	for _, c := range cmds {
		c.Process.Kill()
	}
	wg.Wait()
}

// storm starts n children blocked on one pipe, releases them, and returns
// when every Wait has returned (or after 60 s).
func storm(n int, mode string, out *os.File, rec []seen) (observed int, secs, spawnSecs float64) {
	r, w, err := os.Pipe()
	if err != nil {
		die("pipe", err)
	}
	done := make(chan seen, n)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		c := command(mode, r, out)
		if err := c.Start(); err != nil {
			die(fmt.Sprintf("start %s (child %d)", child, i), err)
		}
		go func() {
			c.Wait()
			done <- seen{int64(c.Process.Pid), monoNs()}
		}()
	}
	spawnSecs = time.Since(t0).Seconds()
	r.Close()
	t1 := time.Now()
	w.Close()
	timeout := time.After(60 * time.Second)
	for observed < n {
		select {
		case s := <-done:
			if rec != nil {
				rec[observed] = s
			}
			observed++
			continue
		case <-timeout:
		}
		break
	}
	return observed, time.Since(t1).Seconds(), spawnSecs
}

func cmdStorm(n int) {
	obs, secs, spawnSecs := storm(n, "s", os.Stdout, nil)
	fmt.Printf("ok n=%d observed=%d lost=%d secs=%.6f us_per_exit=%.3f spawn_secs=%.6f\n",
		n, obs, n-obs, secs, secs*1e6/float64(n), spawnSecs)
}

func cmdLatency(n int, how, file string) {
	cf, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0644)
	if err != nil {
		die(file, err)
	}
	rec := make([]seen, n)
	obs := 0
	if how == "idle" {
		for i := 0; i < n; i++ {
			c := command("t", os.Stdin, cf)
			if err := c.Start(); err != nil {
				die("start "+child, err)
			}
			c.Wait()
			rec[i] = seen{int64(c.Process.Pid), monoNs()}
			obs++
		}
	} else {
		obs, _, _ = storm(n, "w", cf, rec)
	}
	mf, err := os.Create(file + ".mon")
	if err != nil {
		die(file+".mon", err)
	}
	bw := bufio.NewWriter(mf)
	for _, s := range rec[:obs] {
		binary.Write(bw, binary.LittleEndian, s)
	}
	bw.Flush()
	mf.Close()
	fmt.Printf("ok n=%d observed=%d\n", n, obs)
}

func main() {
	a := os.Args
	if len(a) < 4 {
		fmt.Fprintln(os.Stderr, "usage: go_bench spawn|scale|storm|latency CHILD N ...")
		os.Exit(2)
	}
	raiseNofile()
	child = a[2]
	n, _ := strconv.Atoi(a[3])
	switch {
	case a[1] == "spawn" && len(a) == 5:
		k, _ := strconv.Atoi(a[4])
		cmdSpawn(n, k)
	case a[1] == "scale":
		cmdScale(n)
	case a[1] == "storm":
		cmdStorm(n)
	case a[1] == "latency" && len(a) == 6:
		cmdLatency(n, a[4], a[5])
	default:
		fmt.Fprintln(os.Stderr, "go_bench: bad command")
		os.Exit(2)
	}
}
