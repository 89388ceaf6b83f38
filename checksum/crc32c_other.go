//go:build !amd64 || purego

package checksum

// hasCastagnoliAVX512 is false off amd64: there is no vector code.
const hasCastagnoliAVX512 = false

// updateCastagnoli returns the CRC-32C of the bytes crc covers followed by
// p: hash/crc32's (which has its own vector code on arm64 and others).
func updateCastagnoli(crc uint32, p []byte) uint32 { return crc32Update(crc, p) }

// castagnoliAVX512 is never called off amd64.
func castagnoliAVX512(crc uint32, p []byte) uint32 { panic("checksum: no AVX-512 CRC-32C here") }
