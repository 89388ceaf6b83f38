package enqueuer

import (
	"context"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sys/unix"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/checksum"
	"github.com/s3fleet/s3fleet/chunker"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
	"github.com/s3fleet/s3fleet/tasks"
)

// transfer describes the object's transfer, and why it cannot be made.
func (s *submission) transfer(o object) (ledger.Transfer, string) {
	t := ledger.Transfer{
		Remote: o.src.Remote, Bucket: o.src.Bucket, Key: o.key, VersionID: o.versionID, ETag: o.etag, Size: o.size,
		ChecksumAlgorithm: string(o.sum.Algorithm), ChecksumType: o.sum.Type, Checksum: o.sum.Value,
		ChecksumKnown: o.checksumSeen || s.req.Verify == assembler.VerifyOff, NoHead: o.noHead,
		Verify: s.req.Verify, Overwrite: s.req.Overwrite, Queue: s.queue,
		RequestPayer: s.req.RequestPayer, ExpectedOwner: s.req.ExpectedOwner, SSECKeyMD5: s.req.SSECKeyMD5,
	}
	if !o.lastModified.IsZero() {
		t.LastModified = o.lastModified.UnixMilli()
	}
	if fp, err := s.e.fingerprint(o.src.Remote); err == nil {
		t.RemoteFP = fp
	}
	if o.path != "" {
		t.Key, t.SourcePath, t.SourcePin, t.ChecksumKnown = "", o.path, o.pin, true
	}
	var final string
	var err error
	if s.req.Delete || o.delete {
		final, t.Delete = o.url(), true
		if o.delete {
			t.RequestPayer, t.ExpectedOwner = "", "" // the source's options: not the destination's
		}
	} else {
		final, err = s.target(o)
		if s.toS3 {
			t.WriteOpts = s.req.Write.Encode()
		}
	}
	t.Dest, t.DestFP = final, s.destFP
	t.ID = s.e.Ledger.IDFor(t)
	t.Queue = tasks.ShardQueue(t.Queue, s.e.Ledger.ShardOf(t.ID))
	if o.cause != "" {
		return t, o.cause
	}
	if err != nil {
		return t, err.Error()
	}
	chunkSize := s.e.ChunkSize
	// On one endpoint S3 copies the bytes itself, pinned by the ETag, where
	// nothing of them reaches a worker to check: not under --verify
	// required, which copies through the workers.
	t.ServerSide = s.serverSide(o)
	switch {
	case t.ServerSide:
		chunkSize = chunker.PartSize(o.size, max(chunkSize, serverSidePart))
	case s.toS3:
		chunkSize = chunker.PartSize(o.size, chunkSize)
	}
	threshold := s.e.Threshold
	if s.toS3 {
		threshold = min(threshold, chunker.MaxPartSize) // one part holds at most 5 GiB
	}
	plan, err := chunker.New(o.size, chunkSize, threshold)
	if err != nil {
		return t, err.Error()
	}
	if o.parts != nil && !t.ServerSide {
		// A copy to S3 takes the source's parts as its own, one chunk each
		// (they were upload parts, so they fit S3's limits), so that a
		// checksum of the parts' checksums can be checked.
		size := s.e.ChunkSize
		if s.toS3 {
			size = chunker.MaxPartSize
		}
		if aligned, err := chunker.Aligned(o.parts, size); err == nil && aligned.Size == o.size {
			plan, t.Parts = aligned, chunker.EncodeParts(o.parts)
		}
	}
	t.ChunkSize, t.Chunks = plan.ChunkSize, plan.Count()
	return t, ""
}

// serverSide reports whether S3 copies the object itself: its destination
// is on its endpoint and its ETag pins it, and --verify required does not
// ask that every byte be checked on its way through a worker.
func (s *submission) serverSide(o object) bool {
	return s.toS3 && o.path == "" && !o.delete && o.src.Remote == s.destObj.Remote && o.etag != "" && s.req.Verify != assembler.VerifyRequired
}

// serverSidePart is the smallest part of a server-side copy: no byte
// passes through a worker, so larger parts only mean fewer requests.
const serverSidePart = 256 << 20

// target is where the object lands: its path, or its destination URL.
func (s *submission) target(o object) (string, error) {
	several := s.destIsDir || len(s.srcs) > 1 || s.req.From != nil
	if !s.toS3 {
		return location.Target(o.src, o.key, s.dest, several)
	}
	dest := s.destObj
	key, err := location.TargetKey(o.src, o.key, dest)
	if err != nil {
		return "", err
	}
	dest.Key = key
	return dest.String(), nil
}

// decide picks what to do with an object from its record and what this
// host sees of its destination. With --sync a file that differs is to be
// replaced, so t may come back with Overwrite set.
//
// For an S3 destination, whether an object is there already is for the
// workers to find (a HEAD before the upload, If-None-Match when it
// completes): a HEAD here per listed object would slow a large listing
// down, and proves nothing by the time the object is written.
func (s *submission) decide(ctx context.Context, cur ledger.Transfer, t *ledger.Transfer, cause string) (mode string, keepData bool, c string) {
	switch cur.State {
	case "":
		switch {
		case cause != "", t.Delete:
		case s.req.Sync && s.toS3 && s.sameObject(ctx, *t):
			return ledger.ModePresent, false, ""
		case s.req.Sync && !s.toS3 && sameFile(t.Dest, t.Size, t.ETag):
			return ledger.ModePresent, false, ""
		case !s.toS3 && placedBy(t.Dest, t.Size, t.ID):
			return ledger.ModePresent, false, ""
		case s.req.Sync:
			t.Overwrite = true
		case !t.Overwrite && !s.toS3 && !t.Delete && exists(t.Dest):
			cause = location.Exists(t.Dest)
		}
		return ledger.ModeCreate, false, cause
	case ledger.Queued, ledger.Running:
		return ledger.ModeAttach, false, ""
	case ledger.Success:
		if cur.Delete {
			return ledger.ModeRestart, false, "" // listed again: a new object under the key
		}
		if s.finalStillThere(ctx, cur) {
			return ledger.ModeSkip, false, ""
		}
		if s.req.Sync {
			t.Overwrite = true
		}
		return ledger.ModeRestart, false, ""
	default: // failed, cancelled: fetch only what is missing
		return ledger.ModeRestart, true, ""
	}
}

// sameFile reports whether path holds the object already: its size and the
// ETag a finished download recorded in the file's xattr.
func sameFile(path string, size int64, etag string) bool {
	st, err := os.Lstat(path)
	if err != nil || !st.Mode().IsRegular() || st.Size() != size {
		return false
	}
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(path, assembler.XattrETag, buf)
	return err == nil && etag != "" && string(buf[:n]) == etag
}

// placedBy reports whether path is the file this very transfer placed:
// its size, and the transfer's ID in the xattr a finished file is marked
// with (the ID names the object's version and the destination). A run
// whose records went with Redis left such files behind: a run again skips
// them, as its --wait message promised, rather than refuse them.
func placedBy(path string, size int64, transfer string) bool {
	st, err := os.Lstat(path)
	return err == nil && st.Mode().IsRegular() && st.Size() == size && transfer != "" && assembler.IsOurs(path, transfer)
}

// finalStillThere reports whether a downloaded object's file is still at its
// destination with its size, as this host sees it. A file this host cannot
// see is downloaded again: a needless download is better than a lost file.
func (s *submission) finalStillThere(ctx context.Context, t ledger.Transfer) bool {
	if s.toS3 {
		return s.objectThere(ctx, t)
	}
	st, err := os.Stat(t.Dest)
	return err == nil && st.Mode().IsRegular() && st.Size() == t.Size
}

// sameObject reports whether an S3 destination holds the object already
// (--sync): the same size, and the same full-object checksum of one
// algorithm (when the source's is known), or the same single-part ETag of
// an unencrypted object (an MD5 of the bytes on both ends), or, for an
// upload, the mtime the upload kept in its metadata. Anything else is
// copied again: a needless copy is better than a stale one.
func (s *submission) sameObject(ctx context.Context, t ledger.Transfer) bool {
	out, err := s.headDest(ctx, t)
	if err != nil || aws.ToInt64(out.ContentLength) != t.Size {
		return false
	}
	if t.SourcePath != "" {
		return out.Metadata[ledger.ReservedMetadata] != "" && out.Metadata[ledger.ReservedMetadata] == tasks.PinMTime(t.SourcePin)
	}
	if d := assembler.SumOf(out); t.Checksum != "" && d.Value != "" && !d.Composite() && d.Algorithm == checksum.Algorithm(t.ChecksumAlgorithm) {
		return d.Value == t.Checksum
	}
	etag := aws.ToString(out.ETag)
	_, multipart := assembler.MultipartETag(etag)
	return t.ETag != "" && etag == t.ETag && !multipart && t.SSECKeyMD5 == "" && !assembler.KeyEncrypted(out.ServerSideEncryption, out.SSECustomerAlgorithm)
}

// objectThere reports whether a copied object is still at its
// destination with its size.
func (s *submission) objectThere(ctx context.Context, t ledger.Transfer) bool {
	out, err := s.headDest(ctx, t)
	return err == nil && aws.ToInt64(out.ContentLength) == t.Size
}

// headDest HEADs a transfer's S3 destination, with its checksum.
func (s *submission) headDest(ctx context.Context, t ledger.Transfer) (*s3.HeadObjectOutput, error) {
	_, dst, _, err := location.ParseDest(t.Dest)
	if err != nil {
		return nil, err
	}
	api, err := s.e.api(ctx, dst.Remote)
	if err != nil {
		return nil, err
	}
	in := &s3.HeadObjectInput{Bucket: aws.String(dst.Bucket), Key: aws.String(dst.Key), ChecksumMode: types.ChecksumModeEnabled}
	// A copy of an SSE-C object is encrypted with its key.
	if err := tasks.SetRequestOptions(in, "", "", t.SSECKeyMD5, map[string][]byte{s.req.SSECKeyMD5: s.req.SSECKey}); err != nil {
		return nil, err
	}
	return api.HeadObject(ctx, in)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
