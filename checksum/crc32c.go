package checksum

import "hash/crc32"

// crc32c is New's streaming CRC-32C: a hash.Hash32 whose Sum appends the
// big-endian value, as crc32.New's does, over updateCastagnoli.
type crc32c uint32

func (c *crc32c) Write(p []byte) (int, error) {
	*c = crc32c(updateCastagnoli(uint32(*c), p))
	return len(p), nil
}

func (c *crc32c) Sum32() uint32 { return uint32(*c) }

func (c *crc32c) Sum(b []byte) []byte {
	v := uint32(*c)
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func (c *crc32c) Reset()         { *c = 0 }
func (c *crc32c) Size() int      { return crc32.Size }
func (c *crc32c) BlockSize() int { return 1 }
