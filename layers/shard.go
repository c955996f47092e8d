package layers

import "hash/crc32"

// shardIndex returns the host that channels_redis picks for name among n hosts
// (channels_redis.utils._consistent_hash): the CRC-32 (IEEE) of the UTF-8 name, masked
// to 12 bits, divided by 4096/n in floating point and truncated. With one host it is
// always 0. Groups hash the bare group name, queues their non-local name.
func shardIndex(name string, n int) int {
	if n <= 1 {
		return 0
	}
	b := crc32.ChecksumIEEE([]byte(name)) & 0xFFF
	return int(float64(b) / (4096 / float64(n)))
}
