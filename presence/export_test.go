package presence

// Crash stops the liveness refresh without deleting the key, as a killed process
// does: the key expires Liveness later.
func (r *Redis) Crash() {
	r.once.Do(func() {
		close(r.stop)
		<-r.done
	})
}
