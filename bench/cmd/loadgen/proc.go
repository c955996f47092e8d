package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/canal-rt/canal/bench/internal/result"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// cpuSeconds reads utime+stime of a process (all its threads) from /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	// The command name, in parentheses, may hold spaces: fields start after the last ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return float64(ut+st) / clockTicks, nil
}

// rssKiB reads VmRSS from /proc/<pid>/status.
func rssKiB(pid int) (int64, error) { return statusKiB(pid, "VmRSS") }

// statusKiB reads a kB field (VmRSS, VmHWM) from /proc/<pid>/status.
func statusKiB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// tracked is a process whose CPU use a phase records.
type tracked struct {
	role string
	pid  int
	core string
}

// cpuMeter snapshots the CPU time of tracked processes at the start of a phase and
// turns the deltas into result.Proc entries at its end.
type cpuMeter struct {
	procs []tracked
	start []float64
	t0    time.Time
}

func newCPUMeter(procs []tracked) *cpuMeter {
	m := &cpuMeter{procs: procs, start: make([]float64, len(procs))}
	for i, p := range procs {
		m.start[i], _ = cpuSeconds(p.pid)
	}
	m.t0 = time.Now()
	return m
}

// stop returns the phase's window and each process's use; extra entries (a publisher
// that measured itself) are appended as given, their Util computed over the window.
func (m *cpuMeter) stop(extra ...result.Proc) (float64, []result.Proc) {
	window := time.Since(m.t0).Seconds()
	out := make([]result.Proc, 0, len(m.procs)+len(extra))
	for i, p := range m.procs {
		end, err := cpuSeconds(p.pid)
		if err != nil {
			continue // the process is gone: its share cannot be known
		}
		d := end - m.start[i]
		out = append(out, result.Proc{Role: p.role, PID: p.pid, Core: p.core, CPUSeconds: d, Util: ratio(d, window)})
	}
	for _, e := range extra {
		e.Util = ratio(e.CPUSeconds, window)
		out = append(out, e)
	}
	return window, out
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}
