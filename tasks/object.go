package tasks

import (
	"fmt"
	"path/filepath"

	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/location"
)

// Object is the source object a task reads, as every payload names it
// (embedded, so its fields are the payload's own on the wire): where it
// is, which version, and the S3 request options that travel with it.
type Object struct {
	// Remote names the endpoint (empty: the top-level one) and RemoteFP
	// its fingerprint as the enqueuer knew it (s3client.Options.Fingerprint).
	Remote    string `json:"remote,omitempty"`
	RemoteFP  string `json:"remote_fp,omitempty"`
	Bucket    string `json:"bucket"`
	Key       string `json:"key"`
	VersionID string `json:"version_id,omitempty"`
	ETag      string `json:"etag,omitempty"`
	Size      int64  `json:"size"`
	// S3 request options: who pays, whose bucket it must be, and the MD5
	// of the SSE-C key the object was encrypted with (never the key).
	RequestPayer  string `json:"request_payer,omitempty"`
	ExpectedOwner string `json:"expected_bucket_owner,omitempty"`
	SSECKeyMD5    string `json:"sse_c_key_md5,omitempty"`
	// Path is a local file to upload, instead of an object (Bucket and
	// Key are then empty), and Pin what it was when listed (FilePin):
	// a file that is no longer so fails its object.
	Path string `json:"path,omitempty"`
	Pin  string `json:"pin,omitempty"`
}

// ObjectOf is the source object of a transfer's record.
func ObjectOf(t ledger.Transfer) Object {
	return Object{
		Remote: t.Remote, RemoteFP: t.RemoteFP, Bucket: t.Bucket, Key: t.Key, VersionID: t.VersionID, ETag: t.ETag, Size: t.Size,
		RequestPayer: t.RequestPayer, ExpectedOwner: t.ExpectedOwner, SSECKeyMD5: t.SSECKeyMD5,
		Path: t.SourcePath, Pin: t.SourcePin,
	}
}

// URL renders the object as REMOTE://bucket/key, or a local file as its
// path.
func (o Object) URL() string {
	if o.Path != "" {
		return o.Path
	}
	return location.Source{Remote: o.Remote, Bucket: o.Bucket, Key: o.Key}.String()
}

// validate refuses an object no enqueuer names.
func (o Object) validate() error {
	if o.Path != "" {
		if o.Bucket != "" || o.Key != "" || o.Remote != "" || !filepath.IsAbs(o.Path) || filepath.Clean(o.Path) != o.Path || o.Pin == "" {
			return fmt.Errorf("a local source needs an absolute clean path, a pin, and no bucket or key")
		}
		return nil
	}
	if o.Bucket == "" || o.Key == "" {
		return fmt.Errorf("missing bucket or key")
	}
	if o.Remote != "" {
		if err := location.ValidRemoteName(o.Remote); err != nil {
			return err
		}
	}
	return nil
}

// get is the GET of the object (or of one range), pinned to the version
// seen at enqueue (etag, when the payload has none).
func (o Object) get(etag, rangeHeader string) getRequest {
	if etag == "" {
		etag = o.ETag
	}
	return getRequest{Remote: o.Remote, RemoteFP: o.RemoteFP, Bucket: o.Bucket, Key: o.Key, VersionID: o.VersionID, ETag: etag, Range: rangeHeader,
		Payer: o.RequestPayer, Owner: o.ExpectedOwner, KeyMD5: o.SSECKeyMD5, Size: o.Size}
}
