package enqueuer

import (
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/tasks"
)

// Request is one enqueue command.
type Request struct {
	Job     string   // resume this job, or name a new one; empty: generate
	Sources []string // s3://bucket/key or s3://bucket/prefix/ URLs
	// From holds more sources, one a line: an s3:// URL, or a JSON line of
	// a manifest (its "source", "size" and "etag" spare the HEAD). Keys read
	// from it land at their key's path under Dest, as a listing's do.
	From io.Reader
	Dest string // a file, or a directory when it ends in "/" or is one
	// ExpectedSize is the object's size, when the caller knows it: no HEAD
	// is sent at all (a single key only), and every chunk's response must
	// agree on the size and the ETag. nil: HEAD the object.
	ExpectedSize *int64
	VersionID    string // pin this version (a single key only)
	Overwrite    bool
	// Verify is off, auto (empty means auto) or required: see assembler.
	Verify string
	// Delete deletes the sources' objects (enqueue rm) rather than copy
	// them: Dest is empty.
	Delete bool
	// Mirror (--delete, with Sync) also deletes the destination objects
	// absent at the source, once its listing is complete and not empty;
	// MaxDelete (when positive) caps how many: over it, none is.
	Mirror    bool
	MaxDelete int64
	// Sync skips objects whose file is there with the same size and ETag
	// (from the fleet's record or the file's xattr) and replaces the rest.
	Sync bool
	// DryRun counts what would be downloaded and records nothing; Planned,
	// when set, is called (from several goroutines) with each object and
	// what would be done with it.
	DryRun  bool
	Planned func(PlannedObject)
	// Include and Exclude are glob patterns (with **) matched against the
	// key below the prefix (or the whole key, for a single key).
	Include, Exclude []string
	Priority         string // high, default or low
	// On runs every task of the job on the workers of this host only (its
	// host queue), for a destination or a source on that host's own disk.
	On            string
	RequestPayer  string // "requester" to pay for requester-pays buckets
	ExpectedOwner string // the account that must own the bucket
	SSECKeyMD5    string // base64 MD5 of the SSE-C key the objects use
	// Write is what a copy to S3 sets on each destination object: storage
	// class, encryption, metadata added to the source's.
	Write ledger.Write
	// SSECKey is the enqueuer's own copy of that key, for its HEADs only;
	// it never leaves this process.
	SSECKey []byte
	// Recorded gives every object its transfer record when it is enqueued,
	// never a pending batch's place without one (see pendable): for a
	// caller that follows the transfer at once (the API's Upload of a small
	// file).
	Recorded bool
}

// setOptions applies the request's S3 options to a HEAD of a source: the
// payer, the expected owner, and the SSE-C key (the enqueuer's own copy).
func (r Request) setOptions(in *s3.HeadObjectInput) error {
	return tasks.SetRequestOptions(in, r.RequestPayer, r.ExpectedOwner, r.SSECKeyMD5, map[string][]byte{r.SSECKeyMD5: r.SSECKey})
}

// single reports whether the request names exactly one key.
func (r Request) single() bool {
	if len(r.Sources) != 1 || r.From != nil {
		return false
	}
	_, rest, _ := strings.Cut(r.Sources[0], "://")
	return strings.Count(rest, "/") > 0 && !strings.HasSuffix(rest, "/")
}

// Summary says what an enqueue did (or, with DryRun, would do).
type Summary struct {
	Job      string `json:"job"`
	Objects  int64  `json:"objects"`
	Bytes    int64  `json:"bytes"`
	New      int64  `json:"new"`               // enqueued for the first time
	Attached int64  `json:"attached"`          // already in flight
	Resumed  int64  `json:"resumed"`           // failed, cancelled or gone, enqueued again
	Skipped  int64  `json:"skipped"`           // already downloaded
	Refused  int64  `json:"refused"`           // recorded failed at once (unsafe key, existing file)
	Filtered int64  `json:"filtered"`          // left out by --include/--exclude
	Deletes  int64  `json:"deletes,omitempty"` // destination objects absent at the source, to delete (--delete)
	Chunks   int64  `json:"chunks"`            // chunk tasks newly enqueued (planned, with DryRun)
	// ListedOn names the --on host whose worker lists the sources (a
	// local tree there): the objects join the job as it does.
	ListedOn string `json:"listed_on,omitempty"`
	DryRun   bool   `json:"dry_run,omitempty"`
}

// PlannedObject is one object of a dry run and what enqueue would do with
// it.
type PlannedObject struct {
	Source string `json:"source"`
	Path   string `json:"path,omitempty"`
	Size   int64  `json:"size"`
	// Action is download, attach (in flight already), resume (failed or
	// cancelled before, or its file is gone), skip (done already), refuse
	// (with Cause), filter (left out by --include/--exclude), or delete
	// (enqueue rm).
	Action string `json:"action"`
	Cause  string `json:"cause,omitempty"`
}
