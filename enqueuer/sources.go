package enqueuer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/s3fleet/s3fleet/assembler"
	"github.com/s3fleet/s3fleet/checksum"
	"github.com/s3fleet/s3fleet/chunker"
	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/location"
)

// object is one source object as the listing or HEAD described it.
type object struct {
	src          location.Source // the URL it came from (key or prefix)
	key          string
	size         int64
	etag         string
	versionID    string
	lastModified time.Time
	sum          assembler.Sum // S3's checksum: the algorithm from a listing, all of it from a HEAD
	checksumSeen bool          // sum is all there is: no HEAD is to be made for it
	parts        []chunker.Run // the upload's parts, when the chunks are to be aligned to them
	noHead       bool          // --expected-size: nothing but the chunks' responses describes it
	cause        string        // why it cannot be downloaded (a failed HEAD)
	path, pin    string        // a local file to upload, and its pin (location.FilePin)
	delete       bool          // a destination object to delete (--delete)
	archived     bool          // listed in an archive storage class: restored or not, a HEAD tells
}

// url renders the object as its URL (a local file as its path).
func (o object) url() string {
	if o.path != "" {
		return o.path
	}
	return location.Source{Remote: o.src.Remote, Bucket: o.src.Bucket, Key: o.key}.String()
}

// each calls page with the objects of every source, a page at a time:
// listings as S3 pages them, keys in batches HEADed in parallel.
func (s *submission) each(ctx context.Context, page func([]object) error) error {
	var keys []location.Source
	fromFile := false // keys read from --from land at their key's path, as a listing's do
	flushKeys := func() error {
		if len(keys) == 0 {
			return nil
		}
		objs := make([]object, len(keys))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(max(s.e.Parallel, 1))
		for i, k := range keys {
			g.Go(func() error {
				o, err := s.e.head(gctx, k, s.req)
				if err != nil {
					o = object{src: k, key: k.Key, cause: err.Error()}
				}
				if fromFile {
					o.src = location.Source{Remote: k.Remote, Bucket: k.Bucket} // the bucket as prefix
				}
				objs[i] = o
				return nil
			})
		}
		_ = g.Wait()
		keys = keys[:0]
		return page(objs)
	}
	source := func(src location.Source) error {
		if s.local {
			return s.walk(ctx, src, page)
		}
		if src.IsPrefix() {
			if err := flushKeys(); err != nil {
				return err
			}
			return s.e.list(ctx, src, s.req, page)
		}
		keys = append(keys, src)
		if len(keys) >= 256 {
			return flushKeys()
		}
		return nil
	}
	for _, src := range s.srcs {
		if err := source(src); err != nil {
			return err
		}
	}
	if err := flushKeys(); err != nil {
		return err
	}
	if s.req.From != nil {
		fromFile = true
		sc := bufio.NewScanner(s.req.From)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var listed []object
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if strings.HasPrefix(line, "{") {
				o, err := manifestObject(line, s.e.remoteNames())
				if err != nil {
					return fmt.Errorf("%w: --from line %d: %w", ErrUsage, n, err)
				}
				if listed = append(listed, o); len(listed) >= 1000 {
					if err := page(listed); err != nil {
						return err
					}
					listed = nil
				}
				continue
			}
			src, err := location.ParseURL(line, s.e.remoteNames())
			if err != nil {
				return fmt.Errorf("%w: --from line %d: %w", ErrUsage, n, err)
			}
			if err := source(src); err != nil {
				return err
			}
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("read --from: %w", err)
		}
		if len(listed) > 0 {
			if err := page(listed); err != nil {
				return err
			}
		}
	}
	return flushKeys()
}

// manifestObject reads one line of a manifest (as --manifest writes it):
// the object's source, size and ETag, so no HEAD is needed.
func manifestObject(line string, remotes []string) (object, error) {
	var m struct {
		Source    string `json:"source"`
		Size      *int64 `json:"size"`
		ETag      string `json:"etag"`
		VersionID string `json:"version_id"`
		// S3's checksum, when the manifest knows it: then no HEAD is made
		// for it at assembly either. A line of the fleet's own manifest
		// (it has a check) holds the CRC the fleet computed, which is S3's
		// only when the check was against that algorithm.
		Checksum          string `json:"checksum"`
		Check             string `json:"check"`
		ChecksumAlgorithm string `json:"checksum_algorithm"`
		ChecksumType      string `json:"checksum_type"`
	}
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		return object{}, fmt.Errorf("not a manifest line: %w", err)
	}
	src, err := location.ParseURL(m.Source, remotes)
	if err != nil {
		return object{}, err
	}
	if src.IsPrefix() || m.Size == nil || *m.Size < 0 {
		return object{}, fmt.Errorf("manifest line for %q needs a key and a size", m.Source)
	}
	o := object{src: location.Source{Remote: src.Remote, Bucket: src.Bucket}, key: src.Key, size: *m.Size, etag: m.ETag, versionID: m.VersionID}
	if m.Check != "" && !strings.EqualFold(m.Check, m.ChecksumAlgorithm) {
		m.ChecksumAlgorithm, m.Checksum = "", "" // computed, but not compared with S3's: no evidence
	}
	if m.ChecksumAlgorithm != "" {
		a, err := checksum.Parse(m.ChecksumAlgorithm)
		if err != nil {
			return object{}, fmt.Errorf("manifest line for %q: %w", m.Source, err)
		}
		o.sum = assembler.Sum{Algorithm: a, Type: m.ChecksumType, Value: m.Checksum}
		o.checksumSeen = m.Checksum != ""
	}
	// Like every key read from --from, it lands at its key's path under DEST.
	return o, nil
}

// localSource reads a local source: a file, or a directory (a prefix:
// its files land at their paths below it), as an absolute path.
func localSource(raw string) (location.Source, error) {
	abs, err := filepath.Abs(raw)
	if err != nil {
		return location.Source{}, fmt.Errorf("source %q: %w", raw, err)
	}
	st, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return location.Source{}, fmt.Errorf("source %s is neither an object URL (s3://bucket/key, REMOTE://bucket/key) nor a local file or directory", raw)
	case err != nil:
		return location.Source{}, fmt.Errorf("source %s: %w", raw, err)
	case st.IsDir():
		return location.Source{Key: strings.TrimSuffix(abs, "/") + "/"}, nil
	case !st.Mode().IsRegular():
		return location.Source{}, fmt.Errorf("source %s is not a regular file or a directory", raw)
	}
	return location.Source{Key: abs}, nil
}

// walk lists the files of a local source, a page at a time, each pinned
// (size, times, inode) as it is now. Symlinks and special files are left
// out, with a warning: an upload does not follow links out of the tree.
func (s *submission) walk(ctx context.Context, src location.Source, page func([]object) error) error {
	var objs []object
	add := func(path string) error {
		p, err := location.PinPath(path)
		if err != nil {
			return err
		}
		objs = append(objs, object{src: src, key: filepath.ToSlash(path), size: p.Size, lastModified: p.MTime, path: path, pin: p.Pin, checksumSeen: true})
		if len(objs) < 1000 {
			return nil
		}
		err = page(objs)
		objs = nil
		return err
	}
	if !src.IsPrefix() {
		if err := add(src.Key); err != nil {
			return err
		}
	} else {
		err := filepath.WalkDir(strings.TrimSuffix(src.Key, "/"), func(path string, d fs.DirEntry, err error) error {
			switch {
			case err != nil:
				return fmt.Errorf("walk %s: %w", path, err)
			case ctx.Err() != nil:
				return ctx.Err()
			case d.IsDir():
				return nil
			case !d.Type().IsRegular():
				s.e.logger().Warn("not uploaded: not a regular file", "path", path, "type", d.Type().String())
				return nil
			}
			return add(path)
		})
		if err != nil {
			return err
		}
	}
	if len(objs) == 0 {
		return nil
	}
	return page(objs)
}

// absDest makes the destination absolute, keeping a trailing "/", and says
// whether it is an existing directory on this host.
func absDest(d string) (string, bool, error) {
	if d == "" {
		return "", false, errors.New("empty destination")
	}
	abs, err := filepath.Abs(d)
	if err != nil {
		return "", false, fmt.Errorf("destination %q: %w", d, err)
	}
	st, err := os.Stat(abs)
	isDir := err == nil && st.IsDir()
	if strings.HasSuffix(d, "/") {
		abs += "/"
	}
	return abs, isDir, nil
}

// head reads one object's size, ETag, version and checksum, or takes the
// size the user gave. A 404 says whether the bucket or the key is missing.
func (e *Enqueuer) head(ctx context.Context, src location.Source, req Request) (object, error) {
	if req.ExpectedSize != nil && req.single() {
		// No HEAD, now or at assembly: the chunks' responses must agree.
		return object{src: src, key: src.Key, size: *req.ExpectedSize, versionID: req.VersionID, checksumSeen: true, noHead: true}, nil
	}
	in := &s3.HeadObjectInput{Bucket: aws.String(src.Bucket), Key: aws.String(src.Key), ChecksumMode: types.ChecksumModeEnabled}
	if req.VersionID != "" {
		in.VersionId = aws.String(req.VersionID)
	}
	if err := req.setOptions(in); err != nil {
		return object{}, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	api, err := e.api(ctx, src.Remote)
	if err != nil {
		return object{}, err
	}
	out, err := api.HeadObject(ctx, in)
	if err != nil {
		if s3client.HTTPStatus(err) == 404 {
			if _, berr := api.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(src.Bucket)}); s3client.HTTPStatus(berr) == 404 {
				return object{}, fmt.Errorf("head %s: bucket %q does not exist", src, src.Bucket)
			}
			return object{}, fmt.Errorf("head %s: no such key %q in bucket %q", src, src.Key, src.Bucket)
		}
		desc, _ := s3client.DescribeSSEC(err, in.SSECustomerKeyMD5 != nil)
		return object{}, fmt.Errorf("head %s: %s", src, desc)
	}
	if cause := archived(string(out.StorageClass), aws.ToString(out.Restore), string(out.ArchiveStatus)); cause != "" && !req.Delete {
		return object{}, fmt.Errorf("%s: %s", src, cause)
	}
	o := object{
		src: src, key: src.Key, size: aws.ToInt64(out.ContentLength), etag: aws.ToString(out.ETag),
		versionID: aws.ToString(out.VersionId), lastModified: aws.ToTime(out.LastModified),
		sum: assembler.SumOf(out), checksumSeen: true,
	}
	if req.VersionID == "" {
		o.versionID = "" // pin by ETag; a version ID is only sent when the user asked for one
	}
	return o, nil
}

// describe completes what a listing leaves out of the objects that are
// not fetched whole (whose batch GET brings their checksum):
//   - a listing names a checksum's algorithm at most (MinIO's never do),
//     and a manifest line may name one without its value: a HEAD pinned to
//     the ETag reads the checksum now rather than at assembly, so that the
//     chunks compute the object's own CRC (one HEAD either way);
//   - an object whose checksum is its parts' checksums (COMPOSITE; under
//     verify: required, a multipart ETag with no checksum) has its parts
//     read, a HEAD with partNumber per part, so that its chunks are cut
//     along them.
//
// Several objects at once. An object these cannot be read for is planned
// as usual, and its check says why.
func (s *submission) describe(ctx context.Context, objs []object) {
	if s.req.DryRun || s.req.Delete || s.req.Verify == assembler.VerifyOff {
		return
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(s.e.Parallel, 1))
	for i := range objs {
		o := &objs[i]
		if o.cause != "" || o.path != "" || (s.e.BatchMaxObject > 0 && o.size <= s.e.BatchMaxObject) {
			continue
		}
		g.Go(func() error {
			if !o.checksumSeen {
				if sum, err := s.e.checksumOf(gctx, o, s.req); err == nil {
					o.sum, o.checksumSeen = sum, true
				} else {
					s.e.logger().Warn("cannot read the object's checksum now: the assembler will", "bucket", o.src.Bucket, "key", o.key, "err", err)
				}
			}
			n, ok := assembler.MultipartETag(o.etag)
			if s.serverSide(*o) || !ok || n < 2 || !(o.sum.Composite() || o.sum.Algorithm == "" && s.req.Verify == assembler.VerifyRequired) {
				return nil
			}
			parts, err := s.e.partSizes(gctx, o, n, s.req)
			if err != nil {
				s.e.logger().Warn("cannot read the upload's parts: its checksum of checksums will not be checked",
					"bucket", o.src.Bucket, "key", o.key, "err", err)
				return nil
			}
			o.parts = parts
			return nil
		})
	}
	_ = g.Wait()
}

// checksumOf HEADs a listed object, pinned to its ETag, for its checksum.
func (e *Enqueuer) checksumOf(ctx context.Context, o *object, req Request) (assembler.Sum, error) {
	in := &s3.HeadObjectInput{Bucket: aws.String(o.src.Bucket), Key: aws.String(o.key), ChecksumMode: types.ChecksumModeEnabled}
	if o.etag != "" {
		in.IfMatch = aws.String(o.etag)
	}
	if err := req.setOptions(in); err != nil {
		return assembler.Sum{}, err
	}
	api, err := e.api(ctx, o.src.Remote)
	if err != nil {
		return assembler.Sum{}, err
	}
	out, err := api.HeadObject(ctx, in)
	if err != nil {
		desc, _ := s3client.DescribeSSEC(err, in.SSECustomerKeyMD5 != nil)
		return assembler.Sum{}, fmt.Errorf("head %s for its checksum: %s", o.url(), desc)
	}
	return assembler.SumOf(out), nil
}

// partSizes reads the sizes of an object's n upload parts.
func (e *Enqueuer) partSizes(ctx context.Context, o *object, n int, req Request) ([]chunker.Run, error) {
	sizes := make([]int64, n)
	api, err := e.api(ctx, o.src.Remote)
	if err != nil {
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(e.Parallel, 1))
	for i := range sizes {
		g.Go(func() error {
			in := &s3.HeadObjectInput{Bucket: aws.String(o.src.Bucket), Key: aws.String(o.key),
				PartNumber: aws.Int32(int32(i + 1)), IfMatch: aws.String(o.etag)}
			if o.versionID != "" {
				in.VersionId = aws.String(o.versionID)
			}
			if err := req.setOptions(in); err != nil {
				return err
			}
			out, err := api.HeadObject(gctx, in)
			if err != nil {
				return fmt.Errorf("head part %d of %s: %s", i+1, o.url(), s3client.Describe(err))
			}
			if sizes[i] = aws.ToInt64(out.ContentLength); sizes[i] <= 0 {
				return fmt.Errorf("part %d of %s has %d bytes", i+1, o.url(), sizes[i])
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return chunker.RunsOf(sizes), nil
}

// list streams the objects under a prefix, a page at a time.
func (e *Enqueuer) list(ctx context.Context, src location.Source, req Request, page func([]object) error) error {
	in := &s3.ListObjectsV2Input{Bucket: aws.String(src.Bucket), Prefix: aws.String(src.Key), EncodingType: types.EncodingTypeUrl}
	if req.RequestPayer != "" {
		in.RequestPayer = types.RequestPayer(req.RequestPayer)
	}
	if req.ExpectedOwner != "" {
		in.ExpectedBucketOwner = aws.String(req.ExpectedOwner)
	}
	api, err := e.api(ctx, src.Remote)
	if err != nil {
		return err
	}
	// The next page is listed while this one is recorded: on a listing
	// of a million keys the two take about as long each.
	pages := make(chan []object, 1)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var listErr error
	go func() {
		defer close(pages)
		listErr = e.listPages(lctx, api, in, src, req, func(objs []object) error {
			select {
			case pages <- objs:
				return nil
			case <-lctx.Done():
				return lctx.Err()
			}
		})
	}()
	for objs := range pages {
		if err := page(objs); err != nil {
			cancel()
			for range pages { // the lister stops at its next page
			}
			return err
		}
	}
	return listErr
}

// listPages lists in, page by page, into page.
func (e *Enqueuer) listPages(ctx context.Context, api s3.ListObjectsV2APIClient, in *s3.ListObjectsV2Input, src location.Source, req Request, page func([]object) error) error {
	p := s3.NewListObjectsV2Paginator(api, in)
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			if s3client.ErrorCode(err) == "NoSuchBucket" {
				return fmt.Errorf("list %s: bucket %q does not exist", src, src.Bucket)
			}
			return fmt.Errorf("list %s: %s", src, s3client.Describe(err))
		}
		objs := make([]object, 0, len(out.Contents))
		for _, c := range out.Contents {
			key, err := s3client.ListedKey(out, c.Key)
			if err != nil {
				return fmt.Errorf("list %s: %w", src, err)
			}
			if strings.HasSuffix(key, "/") && aws.ToInt64(c.Size) == 0 {
				continue // a folder marker
			}
			o := object{src: src, key: key, size: aws.ToInt64(c.Size), etag: aws.ToString(c.ETag), lastModified: aws.ToTime(c.LastModified)}
			// A listing names the checksum's algorithm (which the chunks then
			// compute) but never its value: the assembler HEADs for it, and a
			// batch GET returns it. A listing that names none is not trusted
			// to mean there is none.
			o.sum = listedSum(c)
			o.archived = archiveClass(string(c.StorageClass))
			objs = append(objs, o)
		}
		if !req.Delete {
			e.checkArchived(ctx, objs, req)
		}
		if len(objs) > 0 {
			if err := page(objs); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkArchived HEADs the listed objects of an archive storage class,
// several at once (a listing cannot tell a restored one), and refuses
// those not restored. A HEAD that fails leaves the object be: its GET
// will say.
func (e *Enqueuer) checkArchived(ctx context.Context, objs []object, req Request) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(e.Parallel, 1))
	for i := range objs {
		o := &objs[i]
		if !o.archived {
			continue
		}
		g.Go(func() error {
			api, err := e.api(gctx, o.src.Remote)
			if err != nil {
				return nil
			}
			in := &s3.HeadObjectInput{Bucket: aws.String(o.src.Bucket), Key: aws.String(o.key)}
			if err := req.setOptions(in); err != nil {
				return nil
			}
			out, err := api.HeadObject(gctx, in)
			if err != nil {
				e.logger().Warn("cannot tell whether an archived object is restored", "bucket", o.src.Bucket, "key", o.key, "err", s3client.Describe(err))
				return nil
			}
			if cause := archived(string(out.StorageClass), aws.ToString(out.Restore), string(out.ArchiveStatus)); cause != "" {
				o.cause = o.url() + ": " + cause
			}
			return nil
		})
	}
	_ = g.Wait()
}

// archiveClass reports whether objects of a storage class must be
// restored before a GET (GLACIER_IR need not).
func archiveClass(class string) bool {
	return class == string(types.StorageClassGlacier) || class == string(types.StorageClassDeepArchive)
}

// archived says why an object cannot be read now, from its HEAD: in an
// archive storage class and not restored (no x-amz-restore, or a restore
// still running), or in an archive tier of INTELLIGENT_TIERING. A GET
// would fail with InvalidObjectState.
func archived(class, restore, archiveStatus string) string {
	where := class
	switch {
	case archiveStatus != "":
		where = "INTELLIGENT_TIERING " + archiveStatus
	case !archiveClass(class):
		return ""
	}
	switch {
	case strings.Contains(restore, `ongoing-request="false"`):
		return "" // restored: readable until the restore expires
	case strings.Contains(restore, `ongoing-request="true"`):
		return fmt.Sprintf("archived in %s, its restore still running: enqueue again once it is done", where)
	}
	return fmt.Sprintf("archived in %s: restore it first (RestoreObject), then enqueue again", where)
}

// listedSum is what a listing says of an object's checksum: its algorithm
// and type.
func listedSum(o types.Object) assembler.Sum {
	s := assembler.Sum{Type: string(o.ChecksumType)}
	for _, a := range o.ChecksumAlgorithm {
		if alg, err := checksum.Parse(string(a)); err == nil {
			s.Algorithm = alg
			break
		}
	}
	return s
}
