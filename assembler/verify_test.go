package assembler

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/s3fleet/s3fleet/checksum"
)

// object is test data uploaded in parts, with every checksum S3 could keep
// for it, computed here from the standard library's hashes.
type object struct {
	data  []byte
	sizes []int64
}

func newObject(t *testing.T, sizes ...int64) object {
	t.Helper()
	var n int64
	for _, s := range sizes {
		n += s
	}
	o := object{data: make([]byte, n), sizes: sizes}
	_, _ = rand.Read(o.data)
	return o
}

func (o object) parts() [][]byte {
	var out [][]byte
	var off int64
	for _, s := range o.sizes {
		out = append(out, o.data[off:off+s])
		off += s
	}
	return out
}

// crc is the object's CRC of algorithm a, and each part's.
func (o object) crc(a checksum.Algorithm) (whole uint64, parts []uint64) {
	whole = checksum.Update(a, 0, o.data)
	for _, p := range o.parts() {
		parts = append(parts, checksum.Update(a, 0, p))
	}
	return whole, parts
}

// evidence is what aligned chunks of the object would have computed.
func (o object) evidence(a checksum.Algorithm, aligned bool) Evidence {
	whole, parts := o.crc(a)
	ev := Evidence{CRCAlgorithm: a, CRC: whole, Size: int64(len(o.data))}
	if aligned {
		ev.PartCRCs, ev.PartSizes = parts, o.sizes
	}
	return ev
}

// compositeSHA256 is S3's COMPOSITE SHA-256: the SHA-256 of the parts'
// SHA-256s, then -N.
func (o object) compositeSHA256() string {
	h := sha256.New()
	for _, p := range o.parts() {
		s := sha256.Sum256(p)
		h.Write(s[:])
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)) + fmt.Sprintf("-%d", len(o.sizes))
}

// multipartETag is the ETag of a multipart upload: the MD5 of the parts'
// MD5s, then -N.
func (o object) multipartETag() string {
	h := md5.New()
	for _, p := range o.parts() {
		s := md5.Sum(p)
		h.Write(s[:])
	}
	return fmt.Sprintf(`"%x-%d"`, h.Sum(nil), len(o.sizes))
}

func flipped(b []byte) []byte {
	c := bytes.Clone(b)
	c[len(c)/2] ^= 0x40
	return c
}

// TestDecide runs every kind of checksum through Decide, each against
// values computed independently of the code under test, and each with one
// byte flipped in what was read.
func TestDecide(t *testing.T) {
	t.Parallel()
	o := newObject(t, 5<<20+1, 5<<20+1, 333)
	single := newObject(t, 70001)
	sha := sha256.Sum256(o.data)
	md5one := md5.Sum(single.data)
	crc64, _ := o.crc(checksum.CRC64NVME)
	_, c32parts := o.crc(checksum.CRC32C)

	type tc struct {
		name     string
		subject  Subject
		ev       Evidence
		file     []byte // what a re-read finds
		check    string // want, on success
		reason   string // want in the reason, with check none
		wantErr  error  // want, wrapped
		mismatch bool   // with a flipped byte in file (and a CRC of it), Decide fails with ErrChecksum
	}
	src := "s3://bkt/obj"
	cases := []tc{
		{name: "full-object CRC64NVME", check: "crc64nvme", mismatch: true,
			subject: Subject{Source: src, Mode: VerifyAuto, Sum: Sum{checksum.CRC64NVME, "FULL_OBJECT", checksum.Encode(checksum.CRC64NVME, crc64)}},
			ev:      o.evidence(checksum.CRC64NVME, false)},
		{name: "full-object CRC32 of a multipart upload", check: "crc32", mismatch: true,
			subject: Subject{Source: src, Mode: VerifyAuto, Sum: Sum{checksum.CRC32, "FULL_OBJECT", checksum.Encode(checksum.CRC32, checksum.Update(checksum.CRC32, 0, o.data))}, ETag: o.multipartETag()},
			ev:      o.evidence(checksum.CRC32, false)},
		{name: "COMPOSITE CRC32C from aligned chunks", check: "crc32c-composite", mismatch: true,
			subject: Subject{Source: src, Mode: VerifyAuto, Sum: Sum{checksum.CRC32C, "COMPOSITE", checksum.Composite(checksum.CRC32C, c32parts)}, ETag: o.multipartETag()},
			ev:      o.evidence(checksum.CRC32C, true)},
		{name: "COMPOSITE CRC32C, parts unknown", reason: "parts are unknown",
			subject: Subject{Source: src, Mode: VerifyAuto, Sum: Sum{checksum.CRC32C, "COMPOSITE", checksum.Composite(checksum.CRC32C, c32parts)}},
			ev:      o.evidence(checksum.CRC32C, false)},
		{name: "COMPOSITE CRC32C, parts unknown, required", wantErr: ErrUnverified,
			subject: Subject{Source: src, Mode: VerifyRequired, Sum: Sum{checksum.CRC32C, "COMPOSITE", checksum.Composite(checksum.CRC32C, c32parts)}},
			ev:      o.evidence(checksum.CRC32C, false)},
		{name: "COMPOSITE of one part, from the whole CRC", check: "crc32c-composite", mismatch: true,
			subject: Subject{Source: src, Mode: VerifyAuto, Sum: Sum{checksum.CRC32C, "COMPOSITE", checksum.Composite(checksum.CRC32C, []uint64{checksum.Update(checksum.CRC32C, 0, single.data)})}},
			ev:      single.evidence(checksum.CRC32C, false)},
		{name: "COMPOSITE SHA256, auto", reason: "second read of each part",
			subject: Subject{Source: src, Mode: VerifyAuto, Sum: Sum{checksum.SHA256, "COMPOSITE", o.compositeSHA256()}},
			ev:      o.evidence(checksum.CRC64NVME, true), file: o.data},
		{name: "COMPOSITE SHA256, required: each part read again", check: "sha256-composite", mismatch: true,
			subject: Subject{Source: src, Mode: VerifyRequired, Sum: Sum{checksum.SHA256, "COMPOSITE", o.compositeSHA256()}},
			ev:      o.evidence(checksum.CRC64NVME, true), file: o.data},
		{name: "SHA256 of a chunked object, auto", reason: "second read",
			subject: Subject{Source: src, Mode: VerifyAuto, Sum: Sum{checksum.SHA256, "FULL_OBJECT", base64.StdEncoding.EncodeToString(sha[:])}},
			ev:      o.evidence(checksum.CRC64NVME, false), file: o.data},
		{name: "SHA256 of a chunked object, required: read again", check: "sha256", mismatch: true,
			subject: Subject{Source: src, Mode: VerifyRequired, Sum: Sum{checksum.SHA256, "FULL_OBJECT", base64.StdEncoding.EncodeToString(sha[:])}},
			ev:      o.evidence(checksum.CRC64NVME, false), file: o.data},
		{name: "no checksum, multipart ETag, auto", reason: "MD5 of each part",
			subject: Subject{Source: src, Mode: VerifyAuto, ETag: o.multipartETag()},
			ev:      o.evidence(checksum.CRC64NVME, true), file: o.data},
		{name: "no checksum, multipart ETag, required: each part's MD5", check: "md5", mismatch: true,
			subject: Subject{Source: src, Mode: VerifyRequired, ETag: o.multipartETag()},
			ev:      o.evidence(checksum.CRC64NVME, true), file: o.data},
		{name: "no checksum, multipart ETag, parts unknown, required", wantErr: ErrUnverified,
			subject: Subject{Source: src, Mode: VerifyRequired, ETag: o.multipartETag()},
			ev:      o.evidence(checksum.CRC64NVME, false), file: o.data},
		{name: "no checksum, single-part ETag, auto", reason: "second read",
			subject: Subject{Source: src, Mode: VerifyAuto, ETag: `"` + hex.EncodeToString(md5one[:]) + `"`},
			ev:      single.evidence(checksum.CRC64NVME, false), file: single.data},
		{name: "no checksum, single-part ETag, required: read again", check: "md5", mismatch: true,
			subject: Subject{Source: src, Mode: VerifyRequired, ETag: `"` + hex.EncodeToString(md5one[:]) + `"`},
			ev:      single.evidence(checksum.CRC64NVME, false), file: single.data},
		{name: "no checksum, SSE-C ETag, required", wantErr: ErrUnverified,
			subject: Subject{Source: src, Mode: VerifyRequired, ETag: `"` + hex.EncodeToString(md5one[:]) + `"`, Encrypted: true},
			ev:      single.evidence(checksum.CRC64NVME, false), file: single.data},
		{name: "XXHASH64, which cannot be computed", reason: "cannot compute",
			subject: Subject{Source: src, Mode: VerifyAuto, Sum: Sum{checksum.XXHASH64, "FULL_OBJECT", "AAAAAAAAAAA="}},
			ev:      single.evidence(checksum.CRC64NVME, false), file: single.data},
		{name: "verify off", reason: "verify is off",
			subject: Subject{Source: src, Mode: VerifyOff, Sum: Sum{checksum.CRC64NVME, "FULL_OBJECT", "bogus"}},
			ev:      o.evidence(checksum.CRC64NVME, false)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			check, reason, err := Decide(c.subject, c.ev, FileRereader(bytes.NewReader(c.file)))
			switch {
			case c.wantErr != nil:
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("Decide = %q %q %v, want %v", check, reason, err, c.wantErr)
				}
				return
			case err != nil:
				t.Fatalf("Decide: %v", err)
			case c.check != "" && (check != c.check || reason != ""):
				t.Fatalf("Decide = %q %q, want check %q", check, reason, c.check)
			case c.check == "" && (check != CheckNone || !strings.Contains(reason, c.reason)):
				t.Fatalf("Decide = %q %q, want none because %q", check, reason, c.reason)
			}
			if !c.mismatch {
				return
			}
			// The same with one byte flipped in what was downloaded: the CRCs
			// computed on the way are of the wrong bytes, and so is the file.
			of := o
			if c.ev.Size == int64(len(single.data)) {
				of = single
			}
			bad := object{data: flipped(of.data), sizes: of.sizes}
			ev := bad.evidence(c.ev.CRCAlgorithm, c.ev.PartCRCs != nil)
			if _, _, err := Decide(c.subject, ev, FileRereader(bytes.NewReader(bad.data))); !errors.Is(err, ErrChecksum) {
				t.Fatalf("with a flipped byte: %v, want ErrChecksum", err)
			}
		})
	}
}
