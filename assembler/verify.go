package assembler

import (
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/s3fleet/s3fleet/checksum"
)

// Verify settings: what an object must pass before it is recorded a
// success.
const (
	// VerifyOff compares nothing (the record says check: none).
	VerifyOff = "off"
	// VerifyAuto compares whatever costs no second pass over the bytes: a
	// full-object CRC combined from the chunks' CRCs, or any checksum of an
	// object fetched whole in one GET (computed as it streams).
	VerifyAuto = "auto"
	// VerifyRequired also re-reads the file for what cannot be combined
	// (SHA-1, SHA-256, SHA-512, MD5, a single-part ETag) and fails an
	// object that nothing could verify.
	VerifyRequired = "required"
)

// ParseVerify checks a verify setting; empty means auto.
func ParseVerify(s string) (string, error) {
	switch s {
	case "":
		return VerifyAuto, nil
	case VerifyOff, VerifyAuto, VerifyRequired:
		return s, nil
	}
	return "", fmt.Errorf("verify %q: want off, auto or required", s)
}

// CheckNone is the check of an object nothing was compared with; the
// record's check_reason says why.
const CheckNone = "none"

// CheckMD5 is the check of a file whose MD5 equals its single-part ETag.
const CheckMD5 = "md5"

// ErrUnverified reports an object that verify: required could not check.
var ErrUnverified = errors.New("nothing to verify against")

// Sum is the checksum S3 keeps for an object.
type Sum struct {
	Algorithm checksum.Algorithm // empty: none
	Type      string             // FULL_OBJECT, COMPOSITE or empty (unknown)
	Value     string             // base64 as S3 prints it; "…-N" for a composite
}

// Composite reports a checksum of the parts' checksums ("…-N").
func (s Sum) Composite() bool {
	return strings.Contains(s.Value, "-") || s.Type == string(types.ChecksumTypeComposite)
}

// checksumFields are the response fields that carry S3's checksum; HEAD
// and GET responses have the same.
type checksumFields struct {
	crc32, crc32c, crc64nvme, sha1, sha256, sha512, md5, xx64, xx3, xx128 *string
	typ                                                                   types.ChecksumType
}

// SumOf reads S3's checksum from a HEAD or GET response (made with
// x-amz-checksum-mode: ENABLED), or a CopyObject's result. At most one
// algorithm is set.
func SumOf[T *s3.HeadObjectOutput | *s3.GetObjectOutput | *types.CopyObjectResult](out T) Sum {
	var f checksumFields
	switch o := any(out).(type) {
	case *types.CopyObjectResult:
		if o == nil {
			return Sum{}
		}
		f = checksumFields{crc32: o.ChecksumCRC32, crc32c: o.ChecksumCRC32C, crc64nvme: o.ChecksumCRC64NVME, sha1: o.ChecksumSHA1,
			sha256: o.ChecksumSHA256, sha512: o.ChecksumSHA512, md5: o.ChecksumMD5, typ: o.ChecksumType}
	case *s3.HeadObjectOutput:
		f = checksumFields{o.ChecksumCRC32, o.ChecksumCRC32C, o.ChecksumCRC64NVME, o.ChecksumSHA1, o.ChecksumSHA256,
			o.ChecksumSHA512, o.ChecksumMD5, o.ChecksumXXHASH64, o.ChecksumXXHASH3, o.ChecksumXXHASH128, o.ChecksumType}
	case *s3.GetObjectOutput:
		f = checksumFields{o.ChecksumCRC32, o.ChecksumCRC32C, o.ChecksumCRC64NVME, o.ChecksumSHA1, o.ChecksumSHA256,
			o.ChecksumSHA512, o.ChecksumMD5, o.ChecksumXXHASH64, o.ChecksumXXHASH3, o.ChecksumXXHASH128, o.ChecksumType}
	}
	for _, c := range []struct {
		a checksum.Algorithm
		v *string
	}{
		{checksum.CRC64NVME, f.crc64nvme}, {checksum.CRC32C, f.crc32c}, {checksum.CRC32, f.crc32},
		{checksum.SHA256, f.sha256}, {checksum.SHA1, f.sha1}, {checksum.SHA512, f.sha512}, {checksum.MD5, f.md5},
		{checksum.XXHASH64, f.xx64}, {checksum.XXHASH3, f.xx3}, {checksum.XXHASH128, f.xx128},
	} {
		if v := aws.ToString(c.v); v != "" {
			return Sum{Algorithm: c.a, Type: string(f.typ), Value: v}
		}
	}
	return Sum{Type: string(f.typ)}
}

// CRCFor is the CRC a download computes as it streams for an object whose
// checksum is of algorithm a: that one when it can be combined from the
// chunks' CRCs, else CRC64NVME (S3's default), recorded as computed.
func CRCFor(a checksum.Algorithm) checksum.Algorithm {
	if a.Combinable() {
		return a
	}
	return checksum.CRC64NVME
}

// Evidence is what a download computed over the bytes as they streamed.
type Evidence struct {
	CRCAlgorithm checksum.Algorithm // the CRC of every byte, in order
	CRC          uint64
	// PartCRCs and PartSizes are each upload part's CRC and length, when
	// the chunks were aligned to the parts.
	PartCRCs  []uint64
	PartSizes []int64
	Size      int64 // bytes in all
	// Hash is another algorithm's sum computed on the way (an object
	// fetched whole in one GET), or nil.
	HashAlgorithm checksum.Algorithm
	Hash          hash.Hash
}

// Subject is what an object is checked against.
type Subject struct {
	Source string // s3://bucket/key, for messages
	Mode   string // VerifyOff, VerifyAuto or VerifyRequired
	Sum    Sum
	ETag   string
	// Encrypted says the ETag is no MD5 of the bytes (SSE-C, SSE-KMS).
	Encrypted bool
}

// md5ETag returns the ETag as an MD5 in hex, when it is one: a single-part
// upload's, not encrypted with a customer or KMS key.
func (s Subject) md5ETag() (string, bool) {
	if s.Encrypted {
		return "", false
	}
	return MD5ETag(s.ETag)
}

// KeyEncrypted reports, from a response's encryption headers, an object
// under a KMS key (SSE-KMS, DSSE-KMS) or a customer key (SSE-C): its ETag
// is no MD5 of its bytes (Subject.Encrypted).
func KeyEncrypted(sse types.ServerSideEncryption, customerAlgorithm *string) bool {
	return customerAlgorithm != nil || sse == types.ServerSideEncryptionAwsKms || sse == types.ServerSideEncryptionAwsKmsDsse
}

// MD5ETag returns an ETag of 32 hex digits (quoted or not), a single-part
// upload's, as lower-case hex: the MD5 of the bytes unless the object is
// encrypted with a customer or KMS key, which the ETag alone cannot say.
func MD5ETag(etag string) (string, bool) {
	etag = strings.Trim(etag, `"`)
	if len(etag) != 32 || strings.Contains(etag, "-") {
		return "", false
	}
	if _, err := hex.DecodeString(etag); err != nil {
		return "", false
	}
	return strings.ToLower(etag), true
}

// WantHash says which sum a download that reads the object whole in one
// pass should compute beside its CRC, so that Decide needs no re-read: the
// object's own non-combinable checksum, or MD5 for a single-part ETag when
// S3 keeps no checksum.
func WantHash(s Subject) checksum.Algorithm {
	if s.Mode == VerifyOff {
		return ""
	}
	if s.Sum.Value != "" {
		if s.Sum.Algorithm.Combinable() || s.Sum.Composite() {
			return ""
		}
		if _, err := checksum.New(s.Sum.Algorithm); err == nil {
			return s.Sum.Algorithm
		}
		return ""
	}
	if _, ok := s.md5ETag(); ok {
		return checksum.MD5
	}
	return ""
}

// Rereader reads n bytes of the file from off again into h.
type Rereader func(h hash.Hash, off, n int64) error

// FileRereader reads the file f again, from the page cache or the disk.
func FileRereader(f io.ReaderAt) Rereader {
	return func(h hash.Hash, off, n int64) error {
		_, err := io.Copy(h, io.NewSectionReader(f, off, n))
		return err
	}
}

// Decide compares what was computed with what S3 keeps and names the check
// made, or why none was: a mismatch wraps ErrChecksum; under
// VerifyRequired, an object nothing could verify wraps ErrUnverified.
// reread, when not nil, reads the file again for the checks that need a
// second pass (VerifyRequired only).
func Decide(s Subject, ev Evidence, reread Rereader) (check, reason string, err error) {
	if s.Mode == VerifyOff {
		return CheckNone, "verify is off", nil
	}
	sum := s.Sum
	switch {
	case sum.Value != "" && !sum.Composite() && sum.Algorithm == ev.CRCAlgorithm:
		if got := checksum.Encode(ev.CRCAlgorithm, ev.CRC); got != sum.Value {
			return "", "", fmt.Errorf("%w: %s: %s of the bytes is %s, S3 says %s", ErrChecksum, s.Source, sum.Algorithm, got, sum.Value)
		}
		return sum.Algorithm.Check(), "", nil
	case sum.Value != "" && sum.Composite():
		return s.composite(ev, reread)
	case sum.Value != "":
		return s.againstSum(ev, reread)
	}
	if n, ok := MultipartETag(s.ETag); ok && !s.Encrypted {
		return s.multipartMD5(n, ev, reread)
	}
	md5, ok := s.md5ETag()
	if !ok {
		why := "S3 keeps no checksum, and the ETag is no MD5 of the bytes (none known, or an encrypted object's)"
		if sum.Algorithm != "" {
			why = fmt.Sprintf("S3 keeps a %s checksum but did not send it", sum.Algorithm)
		}
		return s.unverified(why)
	}
	h, err := s.sumOf(checksum.MD5, ev, reread)
	if err != nil {
		return "", "", err
	}
	if h == nil {
		return s.unverified("S3 keeps no checksum; checking the ETag as an MD5 needs a second read (verify: required)")
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != md5 {
		return "", "", fmt.Errorf("%w: %s: MD5 of the bytes is %s, ETag is %s", ErrChecksum, s.Source, got, md5)
	}
	return CheckMD5, "", nil
}

// composite checks a COMPOSITE checksum, the checksum of the parts'
// checksums: from the parts' CRCs when the chunks were aligned to the
// parts (or the object is one part), else, under VerifyRequired, by reading
// each part again.
func (s Subject) composite(ev Evidence, reread Rereader) (string, string, error) {
	a, want := s.Sum.Algorithm, s.Sum.Value
	parts := ev.PartCRCs
	if parts == nil && strings.HasSuffix(want, "-1") {
		parts = []uint64{ev.CRC} // one part: the whole object
	}
	var got string
	switch {
	case a == ev.CRCAlgorithm && parts != nil:
		got = checksum.Composite(a, parts)
	case ev.PartSizes == nil:
		return s.unverified(fmt.Sprintf("S3 keeps a COMPOSITE %s checksum (%s), and the upload's parts are unknown", a, want))
	case s.Mode != VerifyRequired || reread == nil:
		return s.unverified(fmt.Sprintf("S3 keeps a COMPOSITE %s checksum, which needs a second read of each part (verify: required)", a))
	default:
		sums, err := s.partSums(a, ev.PartSizes, reread)
		if err != nil {
			return "", "", err
		}
		if got, err = checksum.CompositeSums(a, sums); err != nil {
			return "", "", err
		}
	}
	if got != want {
		return "", "", fmt.Errorf("%w: %s: COMPOSITE %s of the parts is %s, S3 says %s", ErrChecksum, s.Source, a, got, want)
	}
	return a.Check() + "-composite", "", nil
}

// multipartMD5 checks the ETag of a multipart upload without checksums,
// the MD5 of its parts' MD5s ("…-N"), by reading each part again: MD5
// costs about 2 CPU-s per GiB here, 40 times CRC64NVME, so only under
// VerifyRequired.
func (s Subject) multipartMD5(n int, ev Evidence, reread Rereader) (string, string, error) {
	sizes := ev.PartSizes
	if sizes == nil && n == 1 && ev.Size > 0 {
		sizes = []int64{ev.Size}
	}
	switch {
	case s.Mode != VerifyRequired || reread == nil:
		return s.unverified("S3 keeps no checksum; checking the multipart ETag needs the MD5 of each part (verify: required)")
	case int64(len(sizes)) != int64(n):
		return s.unverified(fmt.Sprintf("S3 keeps no checksum, and the %d parts of the multipart ETag are unknown", n))
	}
	sums, err := s.partSums(checksum.MD5, sizes, reread)
	if err != nil {
		return "", "", err
	}
	h, _ := checksum.New(checksum.MD5)
	for _, p := range sums {
		h.Write(p)
	}
	got := fmt.Sprintf("%x-%d", h.Sum(nil), n)
	if want := strings.ToLower(strings.Trim(s.ETag, `"`)); got != want {
		return "", "", fmt.Errorf("%w: %s: MD5 of the parts' MD5s is %s, the ETag is %s", ErrChecksum, s.Source, got, want)
	}
	return CheckMD5, "", nil
}

// partSums reads each part again and returns its sum of algorithm a.
func (s Subject) partSums(a checksum.Algorithm, sizes []int64, reread Rereader) ([][]byte, error) {
	sums := make([][]byte, len(sizes))
	var off int64
	for i, n := range sizes {
		h, err := checksum.New(a)
		if err != nil {
			return nil, err
		}
		if err := reread(h, off, n); err != nil {
			return nil, fmt.Errorf("read part %d of %s again for its %s: %w", i+1, s.Source, a, err)
		}
		sums[i] = h.Sum(nil)
		off += n
	}
	return sums, nil
}

// MultipartETag reports whether an ETag is a multipart upload's ("…-N"),
// and of how many parts.
func MultipartETag(etag string) (int, bool) {
	e := strings.Trim(etag, `"`)
	i := strings.LastIndexByte(e, '-')
	if i != 32 {
		return 0, false
	}
	if _, err := hex.DecodeString(e[:i]); err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(e[i+1:])
	return n, err == nil && n >= 1 && n <= 10000
}

// againstSum checks a full-object checksum the CRC on the way was not:
// SHA-*, MD5, or a CRC other than the one computed.
func (s Subject) againstSum(ev Evidence, reread Rereader) (string, string, error) {
	a := s.Sum.Algorithm
	if _, err := checksum.New(a); err != nil {
		return s.unverified(fmt.Sprintf("S3 keeps a %s checksum, which s3fleet cannot compute", a))
	}
	h, err := s.sumOf(a, ev, reread)
	if err != nil {
		return "", "", err
	}
	if h == nil && a.Combinable() {
		return s.unverified(fmt.Sprintf("S3 keeps a %s checksum and the chunks computed %s (the algorithm was not known when they ran): comparing needs a second read (verify: required)", a, ev.CRCAlgorithm))
	}
	if h == nil {
		return s.unverified(fmt.Sprintf("S3 keeps a %s checksum, which needs a second read (verify: required)", a))
	}
	if got := checksum.EncodeSum(h); got != s.Sum.Value {
		return "", "", fmt.Errorf("%w: %s: %s of the bytes is %s, S3 says %s", ErrChecksum, s.Source, a, got, s.Sum.Value)
	}
	return a.Check(), "", nil
}

// sumOf returns algorithm a's sum of the bytes: the one computed on the
// way, or under VerifyRequired one read again; nil when neither is to be
// had.
func (s Subject) sumOf(a checksum.Algorithm, ev Evidence, reread Rereader) (hash.Hash, error) {
	if ev.Hash != nil && ev.HashAlgorithm == a {
		return ev.Hash, nil
	}
	if s.Mode != VerifyRequired || reread == nil {
		return nil, nil
	}
	h, err := checksum.New(a)
	if err != nil {
		return nil, err
	}
	if err := reread(h, 0, ev.Size); err != nil {
		return nil, fmt.Errorf("read %s again for its %s: %w", s.Source, a, err)
	}
	return h, nil
}

// unverified is the outcome of an object nothing could be compared with:
// check none with the reason, or under VerifyRequired a failure.
func (s Subject) unverified(why string) (string, string, error) {
	if s.Mode == VerifyRequired {
		return "", "", fmt.Errorf("%w: %s: %s (verify: required)", ErrUnverified, s.Source, why)
	}
	return CheckNone, why, nil
}
