package main

import (
	"math/bits"
	"sort"
	"strconv"
	"sync/atomic"
)

// hist is a lock-free latency histogram in microseconds: exact below 2,048 µs, then
// 128 buckets per power of two (under 0.8 % error). Record may be called from any
// number of goroutines; Snapshot gives a mergeable sparse copy.
type hist struct {
	b [histBuckets]atomic.Uint64
}

const (
	histLinear  = 2048 // exact buckets: 0 … 2047 µs
	histSubBits = 7    // 128 sub-buckets per power of two above that
	histMaxExp  = 40   // 2^40 µs ≈ 12.7 days: anything above is clamped
	histBuckets = histLinear + (histMaxExp-11+1)<<histSubBits
)

func histIndex(us int64) int {
	if us < 0 {
		return 0 // clock skew between processes: count as zero
	}
	if us < histLinear {
		return int(us)
	}
	e := bits.Len64(uint64(us)) - 1 // ≥ 11
	if e > histMaxExp {
		return histBuckets - 1
	}
	sub := int(uint64(us)>>(e-histSubBits)) & (1<<histSubBits - 1)
	return histLinear + (e-11)<<histSubBits + sub
}

// histValue is the lower bound of bucket i in µs.
func histValue(i int) int64 {
	if i < histLinear {
		return int64(i)
	}
	i -= histLinear
	e := i>>histSubBits + 11
	sub := i & (1<<histSubBits - 1)
	return int64(1)<<e | int64(sub)<<(e-histSubBits)
}

func (h *hist) Record(us int64) { h.b[histIndex(us)].Add(1) }

func (h *hist) Reset() {
	for i := range h.b {
		h.b[i].Store(0)
	}
}

// sparseHist is a histogram's non-zero buckets, keyed by bucket index (as a string,
// for JSON). It is what workers send to the coordinator.
type sparseHist map[string]uint64

func (h *hist) Snapshot() sparseHist {
	out := sparseHist{}
	for i := range h.b {
		if n := h.b[i].Load(); n != 0 {
			out[strconv.Itoa(i)] = n
		}
	}
	return out
}

func (s sparseHist) Merge(o sparseHist) {
	for k, n := range o {
		s[k] += n
	}
}

func (s sparseHist) Count() uint64 {
	var n uint64
	for _, c := range s {
		n += c
	}
	return n
}

// Quantiles returns the values at the given quantiles (0 < q ≤ 1) in milliseconds,
// and the maximum. An empty histogram gives zeros.
func (s sparseHist) Quantiles(qs ...float64) (vals []float64, max float64) {
	type bucket struct {
		i int
		n uint64
	}
	bs := make([]bucket, 0, len(s))
	var total uint64
	for k, n := range s {
		i, err := strconv.Atoi(k)
		if err != nil || n == 0 {
			continue
		}
		bs = append(bs, bucket{i, n})
		total += n
	}
	vals = make([]float64, len(qs))
	if total == 0 {
		return vals, 0
	}
	sort.Slice(bs, func(a, b int) bool { return bs[a].i < bs[b].i })
	for qi, q := range qs {
		rank := uint64(q*float64(total) + 0.5)
		if rank < 1 {
			rank = 1
		}
		var cum uint64
		for _, b := range bs {
			cum += b.n
			if cum >= rank {
				vals[qi] = float64(histValue(b.i)) / 1000
				break
			}
		}
	}
	return vals, float64(histValue(bs[len(bs)-1].i)) / 1000
}
