package server

// vec is one write to a socket: the bytes a writer encoded into its lent buffer
// (headers, small payloads), and references to large payloads, which go out from
// where they are instead of being copied. Server-to-client WebSocket frames are not
// masked, so a frame's bytes on the wire are its header and its Data exactly.
//
// The bytes of the write are buf[:refs[0].at], refs[0].data, buf[refs[0].at:refs[1].at],
// refs[1].data, ..., buf[refs[last].at:].
type vec struct {
	buf     []byte
	refs    []ref
	refSize int // bytes in refs
}

// ref is a payload that goes out after the lent buffer's first at bytes.
type ref struct {
	at   int
	data []byte
}

// zeroCopyMin is the smallest payload a write refers to rather than copies: below it, a
// copy costs less than one more entry in the system call's vector.
const zeroCopyMin = 2 << 10

// addPayload adds p after what buf holds: by reference if it is large, else copied.
func (v *vec) addPayload(p []byte) {
	if len(p) < zeroCopyMin {
		v.buf = append(v.buf, p...)
		return
	}
	v.refs = append(v.refs, ref{at: len(v.buf), data: p})
	v.refSize += len(p)
}

// len is the write's size in bytes.
func (v *vec) len() int { return len(v.buf) + v.refSize }

// segments appends the write's parts, in order, to dst.
func (v *vec) segments(dst [][]byte) [][]byte {
	from := 0
	for _, r := range v.refs {
		if r.at > from {
			dst = append(dst, v.buf[from:r.at])
		}
		dst = append(dst, r.data)
		from = r.at
	}
	if len(v.buf) > from {
		dst = append(dst, v.buf[from:])
	}
	return dst
}

// appendTo appends the write's bytes to dst.
func (v *vec) appendTo(dst []byte) []byte {
	from := 0
	for _, r := range v.refs {
		dst = append(append(dst, v.buf[from:r.at]...), r.data...)
		from = r.at
	}
	return append(dst, v.buf[from:]...)
}

// reset empties v for the next write, keeping its arrays but no payload.
func (v *vec) reset() {
	clear(v.refs)
	v.buf, v.refs, v.refSize = v.buf[:0], v.refs[:0], 0
}
