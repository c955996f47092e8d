//go:build unix

package canaltest

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts redis-server in a process group of its own, so that killGroup
// also reaches any child it forked (BGSAVE, AOF rewrite, replication sync).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killGroup sends SIGKILL to the process group led by cmd's process.
func killGroup(cmd *exec.Cmd) {
	// The group id equals the leader's pid because of Setpgid.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill() // in case the group kill was refused
}
