// Package result is the JSON the benchmark's load generator writes for each cell (one
// workload against one server in one run) and the report reads.
package result

import (
	"encoding/json"
	"fmt"
	"os"
)

// Server names, in the report's column order.
const (
	Canal          = "canal"
	ChannelsCore   = "channels-core"
	ChannelsPubSub = "channels-pubsub"
	Baseline       = "baseline"
	// CanalBin is the canal binary (cmd/canal) configured for the benchmark
	// (bench/servers/canalbin): a column only when a run asks for it
	// (--servers …,canal-bin), measured against Canal's hand-written server.
	CanalBin = "canal-bin"
	// Floor is W1's floor (bench/servers/floor): accept, read, one write, close, and
	// nothing else; a column only when a run asks for it (--servers …,floor).
	Floor = "floor"
)

// Servers lists the servers of a default run, in column order.
var Servers = []string{Canal, ChannelsCore, ChannelsPubSub, Baseline}

// Columns lists every server the harness knows, in the report's column order:
// canal-bin next to the hand-written Canal it is compared with.
var Columns = []string{Canal, CanalBin, ChannelsCore, ChannelsPubSub, Baseline, Floor}

// LayerPending is the explicit marker of a Canal cell that needs the Redis channel
// layer while the build has none (bench/servers/canal/layer_pending.go).
const LayerPending = "n/a (Redis layer pending)"

// NoEcho is canal-bin's W4 cell (written by bench/run.sh): the binary relays client
// messages to groups, workers or Django, never straight back, so W4 does not apply.
const NoEcho = "— (no echo)"

// W1Only is the floor server's cell in every workload but W1 (written by bench/run.sh).
const W1Only = "— (W1 only)"

// Cell is one workload run against one server.
type Cell struct {
	Run      int    `json:"run"`
	Server   string `json:"server"`
	Workload string `json:"workload"`        // w1, w2, w3, w4, soak, stress, w5
	Param    int    `json:"param,omitempty"` // N for w2, w3, soak and stress; w5: sockets in all
	// Topology and Procs are W5's: the Redis and layer ("redis", "pubsub", "cluster",
	// "cluster-pubsub") and the number of server processes sharing the sockets.
	Topology string `json:"topology,omitempty"`
	Procs    int    `json:"procs,omitempty"`
	// Condition is the stress mode's: quiet, busy or stalled.
	Condition string `json:"condition,omitempty"`
	// Layer is the channel layer the server used ("redis-core", "redis-pubsub",
	// "pubsub" for the baseline's own SUBSCRIBE, "memory" for Canal while the Redis
	// layer is pending).
	Layer string `json:"layer,omitempty"`
	// NA, when set, says why the cell was not measured; it is shown instead of numbers.
	NA string `json:"na,omitempty"`
	// Error, when set, says why the measurement failed.
	Error  string   `json:"error,omitempty"`
	Phases []Phase  `json:"phases,omitempty"`
	Notes  []string `json:"notes,omitempty"`
}

// Phase is one measured interval of a cell: "handshake" (w1), "burst" and "paced"
// (w2), "idle" (w3), "soak", "echo" (w4).
type Phase struct {
	Name    string             `json:"name"`
	WindowS float64            `json:"window_s"`
	Metrics map[string]float64 `json:"metrics"`
	CPU     []Proc             `json:"cpu"`
}

// Proc is one process's CPU use over a phase's window.
type Proc struct {
	Role       string  `json:"role"` // server, loadgen, worker, redis, publisher
	PID        int     `json:"pid,omitempty"`
	Core       string  `json:"core,omitempty"` // "0" for the server, "1" for the rest
	CPUSeconds float64 `json:"cpu_s"`
	Util       float64 `json:"util"` // CPUSeconds / WindowS: 1.0 is one core busy
}

// Phase returns the phase called name, or nil.
func (c *Cell) Phase(name string) *Phase {
	for i := range c.Phases {
		if c.Phases[i].Name == name {
			return &c.Phases[i]
		}
	}
	return nil
}

// CoreUtil sums the utilization of the processes pinned to core ("0" or "1").
func (p *Phase) CoreUtil(core string) float64 {
	return p.sum(func(pr Proc) bool { return pr.Core == core }, func(pr Proc) float64 { return pr.Util })
}

// RoleUtil sums the utilization of the processes in role.
func (p *Phase) RoleUtil(role string) float64 {
	return p.sum(func(pr Proc) bool { return pr.Role == role }, func(pr Proc) float64 { return pr.Util })
}

// RoleCPU sums the CPU seconds of the processes in role.
func (p *Phase) RoleCPU(role string) float64 {
	return p.sum(func(pr Proc) bool { return pr.Role == role }, func(pr Proc) float64 { return pr.CPUSeconds })
}

// sum adds up field over the processes that match.
func (p *Phase) sum(match func(Proc) bool, field func(Proc) float64) float64 {
	var t float64
	for _, pr := range p.CPU {
		if match(pr) {
			t += field(pr)
		}
	}
	return t
}

// Write stores c as indented JSON at path.
func Write(path string, c *Cell) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Read loads a cell written by Write.
func Read(path string) (*Cell, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Cell
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}
