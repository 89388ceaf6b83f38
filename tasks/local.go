package tasks

import (
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// openLocal opens a local file to upload, refusing one outside
// allow_source (all of them, when it is empty), a symlink, and one that is
// no longer as it was listed (Pin). A file this worker cannot find fails
// the object: an upload needs the file on every worker's host.
func (a Access) openLocal(o Object) (*os.File, error) {
	if err := a.checkSource(o); err != nil {
		return nil, err
	}
	// O_NONBLOCK: a FIFO (a forged path) must not hang the worker in open.
	f, err := os.OpenFile(o.Path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %w: %s is gone, or not on this worker's host (uploads need the file on every worker's host)", asynq.SkipRetry, errSourceGone, o.Path)
	case err != nil:
		return nil, wrapLocal("open "+o.Path, err)
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, permanent("%s is not a regular file", o.Path)
	}
	if err := checkPin(f, o); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkSource refuses a local file outside allow_source (every one, when
// it is empty); objects are let through.
func (a Access) checkSource(o Object) error {
	switch {
	case o.Path == "":
		return nil
	case a.Source.Open():
		return fmt.Errorf("%w: task refused: this worker has no allow_source: it uploads no local file (%s)", asynq.SkipRetry, o.Path)
	}
	if err := a.Source.Check(o.Path); err != nil {
		return fmt.Errorf("%w: task refused: %w", asynq.SkipRetry, err)
	}
	return nil
}

// checkPin fails for good when an open file is no longer as listed.
func checkPin(f *os.File, o Object) error {
	p, err := location.PinFile(f)
	if err != nil {
		return wrapLocal("stat "+o.Path, err)
	}
	if p.Pin != o.Pin {
		return fmt.Errorf("%w: %w: %s changed while it was uploading (size, mtime, ctime or inode differ from when it was listed)", asynq.SkipRetry, errSourceGone, o.Path)
	}
	return nil
}

// PinMTime is the mtime of a file's pin (inode:size:mtime:ctime, times in
// ns) as an upload keeps it in the object's user metadata:
// seconds.nanoseconds; "" for a malformed pin.
func PinMTime(pin string) string {
	f := strings.Split(pin, ":")
	if len(f) != 4 {
		return ""
	}
	ns, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d.%09d", ns/1e9, ns%1e9)
}

// localMeta is what an upload sets from a local file: its Content-Type by
// its extension, and its mtime in user metadata (S3 keeps none).
func localMeta(o Object) objectMeta {
	m := objectMeta{metadata: map[string]string{}}
	if t := mime.TypeByExtension(filepath.Ext(o.Path)); t != "" {
		m.contentType = aws.String(t)
	}
	if mt := PinMTime(o.Pin); mt != "" {
		m.metadata[ledger.ReservedMetadata] = mt
	}
	return m
}
