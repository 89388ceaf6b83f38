// Package ledger keeps the fleet's own records in Redis: jobs, the object
// transfers they are made of, and which chunks of each transfer have landed.
// Every state change is one Lua script, so concurrent workers and enqueuers
// see each transition happen once, and a job's counters always agree with
// the states of its transfers.
//
// All keys share the hash tag {s3fleet}, so the scripts stay valid on a
// Redis Cluster, and live in the same database as asynq's keys.
package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/chunker"
	"github.com/s3fleet/s3fleet/location"
)

// Object states, as s3transfer's futures report them.
const (
	Queued    = "queued"
	Running   = "running"
	Success   = "success"
	Failed    = "failed"
	Cancelled = "cancelled"
	// Skipped is how a job shows an object that was already downloaded.
	Skipped = "skipped"
)

// ErrNotFound reports an unknown job or transfer.
var ErrNotFound = errors.New("not found")

// ErrConflict reports that a record changed between a read and a write.
var ErrConflict = errors.New("record changed concurrently")

const prefix = "{s3fleet}:"

// tag is the hash tag and prefix of shard n's keys. Shard 0's is the one
// every key had before the ledger was sharded, so a ledger of one shard
// keeps its keys where they were.
func (l *Ledger) tag(shard int) string { return l.tags[shard] }

// shardTags are the prefixes of n shards' keys: shard 0's is {s3fleet}:,
// and shard k's the first of {s3fleet.k}:, {s3fleet.k.1}:, … whose hash
// slot is in the k-th of n equal slot ranges (where slot 1377, {s3fleet}'s,
// is not in the first, there is no such aim). A cluster whose slots are
// split evenly over n nodes (as redis-cli --cluster create splits them)
// then has one shard on each.
func shardTags(n int) []string {
	tags := []string{prefix}
	aim := slot("s3fleet") < slotCount/n
	for k := 1; k < n; k++ {
		t := "s3fleet." + strconv.Itoa(k)
		for i := 1; aim && i < 10000; i++ {
			if s := slot(t); s >= k*slotCount/n && s < (k+1)*slotCount/n {
				break
			}
			t = "s3fleet." + strconv.Itoa(k) + "." + strconv.Itoa(i)
		}
		tags = append(tags, "{"+t+"}:")
	}
	return tags
}

// slotCount is the number of hash slots of a Redis Cluster.
const slotCount = 16384

// slot is the Redis Cluster hash slot of a hash tag: CRC16 (XMODEM) modulo
// 16384, as the cluster specification defines it. Written here because
// go-redis keeps its own in an internal package.
func slot(tag string) int {
	var crc uint16
	for i := 0; i < len(tag); i++ {
		crc ^= uint16(tag[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % slotCount
}

// A job's record is in shard 0 (its home: source, destination, listed,
// cancel, the jobs index) and, in every shard, the counters, members,
// skipped set and pending batches of its transfers in that shard: each
// script then touches one shard's keys, and GetJob adds the shards up.
func (l *Ledger) jobKey(shard int, id string) string        { return l.tag(shard) + "job:" + id }
func (l *Ledger) jobXfersKey(shard int, id string) string   { return l.jobKey(shard, id) + ":xfers" }
func (l *Ledger) jobSkippedKey(shard int, id string) string { return l.jobKey(shard, id) + ":skipped" }
func (l *Ledger) jobPendingKey(shard int, id string) string { return l.jobKey(shard, id) + ":pending" }

// jobTPKey holds a job's throughput (see landed_at in luaCommon).
func (l *Ledger) jobTPKey(shard int, id string) string { return l.jobKey(shard, id) + ":tp" }

// jobKeys are the keys of a job in a shard that expire with it.
func (l *Ledger) jobKeys(shard int, id string) []string {
	return []string{l.jobKey(shard, id), l.jobXfersKey(shard, id), l.jobSkippedKey(shard, id), l.jobTPKey(shard, id)}
}
func jobsIndexKey() string { return prefix + "jobs" }

// A transfer's keys are in its shard (ShardOf).
func (l *Ledger) xferKey(id string) string       { return l.tag(l.ShardOf(id)) + "xfer:" + id }
func (l *Ledger) xferChunksKey(id string) string { return l.xferKey(id) + ":chunks" }
func (l *Ledger) xferJobsKey(id string) string   { return l.xferKey(id) + ":jobs" }

// xferTimesKey holds how long each landed chunk took (ms by index); it
// lives a day from the last chunk.
func (l *Ledger) xferTimesKey(id string) string { return l.xferKey(id) + ":times" }

// destKey is the claim on a destination: the transfer last created for it.
// It is in the shard of the transfers to that destination (see IDFor).
func (l *Ledger) destKey(shard int, dest string) string { return l.tag(shard) + "dest:" + dest }

// Ledger reads and writes the records. Records of jobs and objects still
// in progress never expire; the retention runs from an object's end (and a
// job's last object's end).
type Ledger struct {
	rdb    redis.UniversalClient
	ttl    time.Duration
	shards int
	tags   []string // by shard: see shardTags
}

// Option configures a Ledger.
type Option func(*Ledger)

// Shards spreads the transfers' records over n hash tags (at least 1, the
// default), so that a Redis Cluster spreads them over its nodes. Every
// worker and enqueuer of a fleet must use the same n; a transfer's shard
// is in its ID (IDFor), so records made under another n are still found,
// in the shard their ID names (modulo n).
func Shards(n int) Option { return func(l *Ledger) { l.shards = max(n, 1) } }

// New returns a ledger over rdb whose records expire after retention
// without activity.
func New(rdb redis.UniversalClient, retention time.Duration, opts ...Option) *Ledger {
	l := &Ledger{rdb: rdb, ttl: retention, shards: 1}
	for _, o := range opts {
		o(l)
	}
	l.tags = shardTags(l.shards)
	return l
}

// IDFor is the ID of a transfer in this ledger: its Identity, led in a
// sharded ledger by its destination's shard mark (shardMark), so that
// every transfer to one destination is in one shard with that
// destination's claim.
func (l *Ledger) IDFor(t Transfer) string {
	if l.shards <= 1 {
		return t.Identity()
	}
	return shardMark(t.Dest) + t.Identity()
}

// shardMark is the mark a sharded ID begins with: four hex digits of the
// destination's hash, and a dash.
func shardMark(dest string) string {
	h := sha256.Sum256([]byte(dest))
	return hex.EncodeToString(h[:2]) + "-"
}

// ShardOf is the shard a transfer's records are in: its ID's shard mark
// modulo the shard count; shard 0 for an ID without one (made by a ledger
// of one shard).
func (l *Ledger) ShardOf(id string) int {
	if l.shards <= 1 || len(id) < 5 || id[4] != '-' {
		return 0
	}
	n, err := strconv.ParseUint(id[:4], 16, 16)
	if err != nil {
		return 0
	}
	return int(n) % l.shards
}

// NumShards is the number of shards the ledger spreads transfers over.
func (l *Ledger) NumShards() int { return l.shards }

// ErrShards reports a process whose redis_shards is not the fleet's.
var ErrShards = errors.New("redis_shards differs from the fleet's")

// AgreeShards records the ledger's shard count in Redis if none is, and
// otherwise refuses a count other than the recorded one: a worker that
// looked for records in other shards than its enqueuer wrote them to would
// find none, and its jobs would never end.
func (l *Ledger) AgreeShards(ctx context.Context) error {
	got, err := l.rdb.Get(ctx, shardsKey).Int()
	if errors.Is(err, redis.Nil) {
		// The first process records it. A Redis that refuses the write (a
		// read-only user or replica, for status) leaves it unrecorded.
		if set, serr := l.rdb.SetNX(ctx, shardsKey, l.shards, 0).Result(); serr != nil || set {
			return nil
		}
		got, err = l.rdb.Get(ctx, shardsKey).Int() // another process was first
	}
	if err != nil {
		return fmt.Errorf("read the fleet's redis_shards: %w", err)
	}
	if got != l.shards {
		return fmt.Errorf("%w: this process has %d, the fleet's Redis %d (set by its first process; every worker and enqueuer must use the same, and it changes only on an idle fleet: stop them all, let the jobs end, DEL %s, start them with the new one)",
			ErrShards, l.shards, got, shardsKey)
	}
	return nil
}

// CheckShards refuses a shard count other than the one the fleet's Redis
// recorded (AgreeShards), and records none: for a monitor, which must not
// set the fleet's count before its workers do.
func (l *Ledger) CheckShards(ctx context.Context) error {
	got, err := l.rdb.Get(ctx, shardsKey).Int()
	switch {
	case errors.Is(err, redis.Nil):
		return nil
	case err != nil:
		return fmt.Errorf("read the fleet's redis_shards: %w", err)
	case got != l.shards:
		return fmt.Errorf("%w: this process has %d, the fleet's Redis %d", ErrShards, l.shards, got)
	}
	return nil
}

// shardsKey holds the fleet's shard count (AgreeShards).
const shardsKey = prefix + "shards"

// HashTags are the hash tags of the shards' keys, by shard ("{s3fleet}",
// …), for tools that report where the keys live.
func (l *Ledger) HashTags() []string {
	out := make([]string, len(l.tags))
	for i, t := range l.tags {
		out[i] = strings.TrimSuffix(t, ":")
	}
	return out
}

// TransferID names the transfer of one object version to one destination:
// the same object, version and destination always give the same ID.
func TransferID(remote, bucket, key, etag, versionID string, size int64, dest string) string {
	h := sha256.New()
	if remote != "" {
		h.Write([]byte("remote:" + remote)) // the top-level endpoint's IDs stay as they were
		h.Write([]byte{0})
	}
	for _, s := range []string{bucket, key, etag, versionID, strconv.FormatInt(size, 10), dest} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// Identity is the ID the transfer's own fields give it: the object (or
// local file) and its version, the destination and what is asked of it
// (write options, an upload's SSE-C key, a delete). A record whose ID is
// not its identity was rewritten in Redis: workers refuse to act on it
// (see CheckIdentity), and as tasks are signed (TaskKeys), nobody without
// the key can point a worker at a record of their own.
func (t Transfer) Identity() string {
	if t.Delete {
		return TransferID(t.Remote, t.Bucket, t.Key, t.ETag, t.VersionID, t.Size, "delete:"+t.Dest)
	}
	ident := t.Dest
	if t.SourcePath != "" && t.SSECKeyMD5 != "" {
		// An upload encrypted with a customer key is another transfer than
		// one without (a copy of an SSE-C source always is, by its key).
		ident += "\x00sse-c:" + t.SSECKeyMD5
	}
	if t.WriteOpts != "" {
		// Asked with other write options, it is another transfer: an
		// existing one (in flight, done, or holding an upload begun with
		// the old ones) is not taken for it.
		ident += "\x00write:" + t.WriteOpts
	}
	if t.SourcePath != "" {
		return TransferID("file:", "", t.SourcePath, t.SourcePin, "", t.Size, ident)
	}
	return TransferID(t.Remote, t.Bucket, t.Key, t.ETag, t.VersionID, t.Size, ident)
}

// ErrForged reports a record whose fields do not give its ID.
var ErrForged = errors.New("the record's fields do not give its ID: it was rewritten in Redis")

// CheckIdentity refuses a record that is not what its ID names.
func (t Transfer) CheckIdentity() error {
	if id := t.Identity(); t.ID != id && t.ID != shardMark(t.Dest)+id {
		return fmt.Errorf("transfer %s (%s → %s): %w", t.ID, t.Source(), t.Dest, ErrForged)
	}
	return nil
}

// Transfer is the record of one object being downloaded to one path.
type Transfer struct {
	ID string `redis:"id"`
	// SourcePath is a local file to upload (Bucket and Key are empty), and
	// SourcePin what it was when listed (size, times, inode).
	SourcePath string `redis:"source_path"`
	SourcePin  string `redis:"source_pin"`
	// Remote names the source's endpoint (empty: the top-level one), and
	// RemoteFP its fingerprint (s3client.Options.Fingerprint).
	Remote    string `redis:"remote"`
	RemoteFP  string `redis:"remote_fp"`
	Bucket    string `redis:"bucket"`
	Key       string `redis:"key"`
	VersionID string `redis:"version_id"`
	ETag      string `redis:"etag"`
	Size      int64  `redis:"size"`
	ChunkSize int64  `redis:"chunk_size"`
	Chunks    int64  `redis:"chunks"`
	// Parts are the object's upload parts (chunker.EncodeParts) when its
	// chunks are aligned to them, for a checksum of the parts' checksums.
	Parts string `redis:"parts"`
	// Dest is an absolute path, or an object URL (REMOTE://bucket/key)
	// with DestFP its endpoint's fingerprint.
	Dest   string `redis:"dest"`
	DestFP string `redis:"dest_fp"`
	// ServerSide says the destination is on the source's endpoint and S3
	// copies the bytes itself (UploadPartCopy, CopyObject).
	ServerSide bool `redis:"server_side"`
	// Delete says the transfer deletes its object (enqueue rm); Dest is
	// then the object's own URL.
	Delete       bool  `redis:"delete"`
	LastModified int64 `redis:"last_modified"` // Unix milliseconds; 0 if unknown
	// The checksum S3 keeps for the object: its algorithm (CRC64NVME,
	// CRC32, CRC32C, SHA256, …; empty when unknown) and type (FULL_OBJECT
	// or COMPOSITE) from the listing or a HEAD, and its value (base64 as S3
	// sends it, "-N" for a composite) when a HEAD saw it. ChecksumKnown says
	// the value is all there is (a HEAD was made, or none is to be made).
	ChecksumAlgorithm string `redis:"checksum_algorithm"`
	ChecksumType      string `redis:"checksum_type"`
	Checksum          string `redis:"checksum"`
	ChecksumKnown     bool   `redis:"checksum_known"`
	// Verify is off, auto or required (see the assembler).
	Verify    string `redis:"verify"`
	Overwrite bool   `redis:"overwrite"`
	// WriteOpts is what a copy to S3 sets on the destination (Write.Encode).
	WriteOpts string `redis:"write"`
	// NoHead says the object was enqueued with --expected-size: no HEAD
	// described it, so its chunks' responses must pin it themselves.
	NoHead bool `redis:"no_head"`
	// Queue is the chunk queue of the job's priority.
	Queue string `redis:"queue"`
	// S3 request options that travel with the object.
	RequestPayer  string `redis:"request_payer"`
	ExpectedOwner string `redis:"expected_owner"`
	SSECKeyMD5    string `redis:"ssec_key_md5"` // fingerprint of the SSE-C key; the key stays with the workers
	// Batch is the task that fetches a small object whole, with others.
	Batch string `redis:"batch"`

	State     string `redis:"state"`
	Error     string `redis:"error"`
	Gen       int64  `redis:"gen"`
	PartReady bool   `redis:"part_ready"`
	// PartToken names the one part file every chunk writes (see
	// location.PartPath), or, for a transfer to S3, its multipart upload's
	// ID, and PartHost the worker that made it; StalePart is the token of
	// a part file (or upload) whose data was dropped, to be removed.
	PartToken string `redis:"part_token"`
	PartHost  string `redis:"part_host"`
	StalePart string `redis:"stale_part"`
	// SourceETag is the ETag the chunks' responses agreed on, when the
	// object was enqueued without one (--expected-size).
	SourceETag string `redis:"source_etag"`
	BytesDone  int64  `redis:"bytes_done"`
	// Moving is the bytes of its chunks streaming now, not yet landed
	// (ChunkProgress).
	Moving   int64 `redis:"moving"`
	Attempts int64 `redis:"attempts"`
	Created  int64 `redis:"created"`  // Unix milliseconds
	Started  int64 `redis:"started"`  // first chunk began
	Finished int64 `redis:"finished"` // success, failure or cancel

	// The result, once finalized: the checksum the fleet computed over the
	// bytes (S3's encoding of the algorithm Check names) and the check made.
	Computed          string `redis:"computed"`
	ComputedAlgorithm string `redis:"computed_algorithm"` // Computed's: CRC64NVME, CRC32 or CRC32C
	Check             string `redis:"check"`
	CheckReason       string `redis:"check_reason"`
}

// Plan is how the transfer's object is cut into chunks.
func (t Transfer) Plan() (chunker.Plan, error) {
	p := chunker.Plan{Size: t.Size, ChunkSize: max(t.ChunkSize, 1)}
	if t.Parts != "" {
		runs, err := chunker.ParseParts(t.Parts)
		if err != nil {
			return chunker.Plan{}, err
		}
		if p, err = chunker.Aligned(runs, max(t.ChunkSize, 1)); err != nil {
			return chunker.Plan{}, err
		}
	}
	if p.Size != t.Size || p.Count() != t.Chunks {
		return chunker.Plan{}, fmt.Errorf("%w: transfer %s: %d chunks of %d bytes (parts %q) do not cover %d bytes",
			chunker.ErrInvalid, t.ID, t.Chunks, t.ChunkSize, t.Parts, t.Size)
	}
	return p, nil
}

// Source renders the object as its URL: s3://bucket/key, or
// REMOTE://bucket/key, or a local file's path.
func (t Transfer) Source() string {
	if t.SourcePath != "" {
		return t.SourcePath
	}
	return location.Source{Remote: t.Remote, Bucket: t.Bucket, Key: t.Key}.String()
}

// Job is the record of one enqueue command and its counters.
type Job struct {
	ID        string `redis:"id"`
	Source    string `redis:"source"`
	Dest      string `redis:"dest"`
	Created   int64  `redis:"created"`
	Listed    bool   `redis:"listed"` // every object has been enqueued
	ListError string `redis:"list_error"`
	// ListQueue and ListTask name the list task of a job whose files are
	// listed on its --on host (see SetListTask), for cancel.
	ListQueue string `redis:"list_queue"`
	ListTask  string `redis:"list_task"`
	// Seq counts the attaches of transfers to the job: each member's score
	// in the job is the Seq of its last attach. In a sharded ledger each
	// shard counts its own, Seqs (by shard), and Seq is their sum.
	Seq  int64   `redis:"seq"`
	Seqs []int64 `redis:"-"`

	Objects int64 `redis:"objects"`
	// Pending counts the objects, among Objects, that wait in batch tasks
	// without a record yet (see Pend): queued, but not in JobObjects.
	Pending    int64 `redis:"pending"`
	BytesTotal int64 `redis:"bytes_total"`
	BytesDone  int64 `redis:"bytes_done"` // landed, or already there
	// Moving is the bytes of its chunks streaming now, not yet landed.
	Moving    int64 `redis:"moving"`
	Skipped   int64 `redis:"skipped"`
	BytesSkip int64 `redis:"bytes_skipped"` // of BytesDone, already there
	Succeeded int64 `redis:"succeeded"`
	Failed    int64 `redis:"failed"`
	Cancelled int64 `redis:"cancelled"`
	// Checks counts the job's succeeded objects by the check their bytes
	// passed (crc64nvme, md5, none, …).
	Checks map[string]int64 `redis:"-"`
	// Note is what the job last waited for (space on a full disk), and
	// NoteAt when (Unix ms); see NoteJobs.
	Note   string `redis:"note"`
	NoteAt int64  `redis:"note_at"`
}

// Finished is the number of objects in a final state.
func (j Job) Finished() int64 { return j.Succeeded + j.Skipped + j.Failed + j.Cancelled }

// Done reports whether the job's listing is complete and every object is in
// a final state.
func (j Job) Done() bool { return j.Listed && j.Finished() >= j.Objects }

// Ping checks that Redis answers.
func (l *Ledger) Ping(ctx context.Context) error {
	return l.rdb.Ping(ctx).Err()
}

// CreateJob records a job if it does not exist yet; an existing job of that
// ID is resumed and keeps its counters.
func (l *Ledger) CreateJob(ctx context.Context, id, source, dest string, now time.Time) error {
	err := createJobScript.Run(ctx, l.rdb, []string{l.jobKey(0, id), jobsIndexKey()},
		id, source, dest, now.UnixMilli(), l.ttlSeconds()).Err()
	if err == nil && l.shards > 1 {
		pipe := l.rdb.Pipeline()
		for n := 1; n < l.shards; n++ {
			pipe.HDel(ctx, l.jobKey(n, id), "cancel") // enqueued again: run it again
		}
		_, err = pipe.Exec(ctx)
	}
	if err != nil {
		return fmt.Errorf("create job %s: %w", id, err)
	}
	return nil
}

// RecentJobs returns up to n jobs, newest first, forgetting index entries
// whose records have expired.
func (l *Ledger) RecentJobs(ctx context.Context, n int64) ([]Job, error) {
	ids, err := l.rdb.ZRevRange(ctx, jobsIndexKey(), 0, n-1).Result()
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	jobs := make([]Job, 0, len(ids))
	for _, id := range ids {
		j, err := l.GetJob(ctx, id)
		if errors.Is(err, ErrNotFound) {
			l.rdb.ZRem(ctx, jobsIndexKey(), id)
			continue
		}
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// DropPart gives up the transfer's part file of generation gen, named by
// token, when no chunk has landed in it (its space could not be
// reserved): the next chunk to run makes a new one. It reports whether it
// did.
func (l *Ledger) DropPart(ctx context.Context, id string, gen int64, token string) (bool, error) {
	n, err := dropPartScript.Run(ctx, l.rdb, []string{l.xferKey(id), l.xferChunksKey(id)}, gen, token).Int()
	return n == 1, err
}

// NoteJobs tells every job of a transfer what it waits for (a worker
// that found no space for it), for `enqueue --wait` to say.
func (l *Ledger) NoteJobs(ctx context.Context, id, note string, now time.Time) error {
	jobs, err := l.jobsOf(ctx, id)
	if err != nil {
		return err
	}
	pipe := l.rdb.Pipeline()
	for _, j := range jobs {
		pipe.HSet(ctx, l.jobKey(0, j), "note", note, "note_at", now.UnixMilli())
	}
	_, err = pipe.Exec(ctx)
	return err
}

// jobsOf are the jobs a transfer belongs to: its record's first one, and
// the others in its set (see each_job in luaCommon).
func (l *Ledger) jobsOf(ctx context.Context, id string) ([]string, error) {
	pipe := l.rdb.Pipeline()
	first := pipe.HGet(ctx, l.xferKey(id), "job")
	others := pipe.SMembers(ctx, l.xferJobsKey(id))
	_, _ = pipe.Exec(ctx) // errors are per command
	if err := first.Err(); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("jobs of transfer %s: %w", id, err)
	}
	if err := others.Err(); err != nil {
		return nil, fmt.Errorf("jobs of transfer %s: %w", id, err)
	}
	jobs := others.Val()
	if j := first.Val(); j != "" {
		jobs = append([]string{j}, jobs...)
	}
	return jobs, nil
}

// SetListed marks the end of a job's enqueueing, with the error that cut it
// short, if any.
func (l *Ledger) SetListed(ctx context.Context, id string, listErr error) error {
	msg := ""
	if listErr != nil {
		msg = listErr.Error()
	}
	if l.shards <= 1 {
		err := setListedScript.Run(ctx, l.rdb, l.jobKeys(0, id), msg, l.ttlSeconds()).Err()
		if err != nil {
			return fmt.Errorf("mark job %s listed: %w", id, err)
		}
		return nil
	}
	// Sharded, the job's counters are in every shard: whether it is done
	// is their sum. An object that ends after this read starts the
	// retention of its job's keys itself (end_xfer, touchJobs).
	if err := l.rdb.HSet(ctx, l.jobKey(0, id), "listed", 1, "list_error", msg).Err(); err != nil {
		return fmt.Errorf("mark job %s listed: %w", id, err)
	}
	j, err := l.GetJob(ctx, id)
	if err != nil {
		return fmt.Errorf("mark job %s listed: %w", id, err)
	}
	if j.Done() {
		if err := l.expireJobs(ctx, -1, []string{id}); err != nil {
			return fmt.Errorf("mark job %s listed: %w", id, err)
		}
	}
	return nil
}

// touchJobs starts (again) the retention of jobs' records in every shard
// other than the one whose script just ended an object of theirs (and
// touched its own): as in a ledger of one shard, each end of an object
// keeps the whole job for the retention, and the last one starts it. It
// is best effort: the end it follows is recorded, and the next end (or
// SetListed) touches them again.
func (l *Ledger) touchJobs(ctx context.Context, shard int, jobs []string) {
	if (l.shards <= 1 && shard >= 0) || len(jobs) == 0 {
		return // shard -1: every shard
	}
	_ = l.expireJobs(ctx, shard, jobs)
}

// expireJobs starts the retention of jobs' keys in every shard but skip
// (-1: none), in one round trip.
func (l *Ledger) expireJobs(ctx context.Context, skip int, jobs []string) error {
	pipe := l.rdb.Pipeline()
	for _, j := range jobs {
		for n := range l.shards {
			if n == skip {
				continue
			}
			for _, k := range l.jobKeys(n, j) {
				pipe.Expire(ctx, k, l.ttl)
			}
		}
	}
	_, err := pipe.Exec(ctx)
	return err
}

// Supersede takes out of a job its failed and cancelled transfers that
// no attach since the job's Seqs were since has touched, and whose
// destination a transfer attached since then now has: the same job
// enqueued again after its source changed is judged by the new version,
// not the old failure. It returns how many it took out. Only those
// failures' destinations are held in memory; the job's members are read a
// page at a time, in score order. since holds a Seq per shard (Job.Seqs):
// all transfers to one destination are in one shard.
func (l *Ledger) Supersede(ctx context.Context, job string, since []int64) (int, error) {
	n := 0
	for shard, seq := range since {
		if shard >= l.shards {
			break
		}
		k, err := l.supersede(ctx, shard, job, seq)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (l *Ledger) supersede(ctx context.Context, shard int, job string, since int64) (int, error) {
	failed := map[string][]string{} // destination → failed transfers not attached in this run
	err := l.eachMember(ctx, shard, job, "-inf", strconv.FormatInt(since, 10), func(id, dest, state string) {
		if state == Failed || state == Cancelled {
			failed[dest] = append(failed[dest], id)
		}
	})
	if err != nil || len(failed) == 0 {
		return 0, err
	}
	var gone []string
	err = l.eachMember(ctx, shard, job, fmt.Sprintf("(%d", since), "+inf", func(id, dest, _ string) {
		gone = append(gone, failed[dest]...)
		delete(failed, dest)
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range gone {
		ok, err := detachScript.Run(ctx, l.rdb, []string{l.xferKey(id), l.xferJobsKey(id), l.jobKey(shard, job), l.jobXfersKey(shard, job)}, job, id, since).Int()
		if err != nil {
			return n, fmt.Errorf("take transfer %s out of job %s: %w", id, job, err)
		}
		n += ok
	}
	return n, nil
}

// eachMember calls fn with the ID, destination and state of each of a
// job's transfers in a shard whose score is within [min, max] (Redis's
// syntax), a page at a time.
func (l *Ledger) eachMember(ctx context.Context, shard int, job, min, max string, fn func(id, dest, state string)) error {
	const page = 500
	for {
		zs, err := l.rdb.ZRangeByScoreWithScores(ctx, l.jobXfersKey(shard, job), &redis.ZRangeBy{Min: min, Max: max, Count: page}).Result()
		if err != nil {
			return fmt.Errorf("list objects of job %s: %w", job, err)
		}
		if len(zs) == 0 {
			return nil
		}
		pipe := l.rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, len(zs))
		for i, z := range zs {
			cmds[i] = pipe.HMGet(ctx, l.xferKey(z.Member.(string)), "dest", "state")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("read objects of job %s: %w", job, err)
		}
		for i, c := range cmds {
			v := c.Val()
			dest, _ := v[0].(string)
			state, _ := v[1].(string)
			fn(zs[i].Member.(string), dest, state)
		}
		if len(zs) < page {
			return nil
		}
		min = "(" + strconv.FormatFloat(zs[len(zs)-1].Score, 'f', 0, 64) // scores are unique: the next page
	}
}

// SetListTask records the list task that lists a job's files on their
// host, so that a cancel before it runs can stop it.
func (l *Ledger) SetListTask(ctx context.Context, id, queue, task string) error {
	if err := l.rdb.HSet(ctx, l.jobKey(0, id), "list_queue", queue, "list_task", task).Err(); err != nil {
		return fmt.Errorf("record the list task of job %s: %w", id, err)
	}
	return nil
}

// readShards reads the hash key names in every shard, in one round trip.
func (l *Ledger) readShards(ctx context.Context, key func(shard int) string) ([]*redis.MapStringStringCmd, error) {
	pipe := l.rdb.Pipeline()
	reads := make([]*redis.MapStringStringCmd, l.shards)
	for n := range l.shards {
		reads[n] = pipe.HGetAll(ctx, key(n))
	}
	_, err := pipe.Exec(ctx)
	return reads, err
}

// GetJob reads a job's record: its home record, and its counters added
// up over the shards.
func (l *Ledger) GetJob(ctx context.Context, id string) (Job, error) {
	var j Job
	reads, err := l.readShards(ctx, func(n int) string { return l.jobKey(n, id) })
	if err != nil {
		return j, fmt.Errorf("read job %s: %w", id, err)
	}
	if len(reads[0].Val()) == 0 {
		return j, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	if err := reads[0].Scan(&j); err != nil {
		return j, fmt.Errorf("decode job %s: %w", id, err)
	}
	j.Seqs = make([]int64, l.shards)
	j.Seqs[0] = j.Seq
	for n := 1; n < l.shards; n++ {
		var p Job
		if err := reads[n].Scan(&p); err != nil {
			return j, fmt.Errorf("decode job %s (shard %d): %w", id, n, err)
		}
		j.Seqs[n] = p.Seq
		j.Seq += p.Seq
		j.Objects += p.Objects
		j.Pending += p.Pending
		j.BytesTotal += p.BytesTotal
		j.BytesDone += p.BytesDone
		j.Moving += p.Moving
		j.Skipped += p.Skipped
		j.BytesSkip += p.BytesSkip
		j.Succeeded += p.Succeeded
		j.Failed += p.Failed
		j.Cancelled += p.Cancelled
	}
	for _, r := range reads {
		for k, v := range r.Val() {
			if check, ok := strings.CutPrefix(k, "check_"); ok {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
					if j.Checks == nil {
						j.Checks = map[string]int64{}
					}
					j.Checks[check] += n
				}
			}
		}
	}
	return j, nil
}

// GetTransfer reads a transfer's record.
func (l *Ledger) GetTransfer(ctx context.Context, id string) (Transfer, error) {
	return readHash[Transfer](ctx, l.rdb, l.xferKey(id), "transfer "+id)
}

// readHash reads a record stored as a hash into T's redis-tagged fields.
func readHash[T any](ctx context.Context, rdb redis.UniversalClient, key, what string) (T, error) {
	var v T
	res := rdb.HGetAll(ctx, key)
	if err := res.Err(); err != nil {
		return v, fmt.Errorf("read %s: %w", what, err)
	}
	if len(res.Val()) == 0 {
		return v, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err := res.Scan(&v); err != nil {
		return v, fmt.Errorf("decode %s: %w", what, err)
	}
	return v, nil
}

// JobObject is one object of a job as status shows it.
type JobObject struct {
	Transfer
	JobState string // the transfer's state, or Skipped for this job
}

// JobObjects walks a job's objects in the order they were last enqueued
// (attached; shard by shard in a sharded ledger), a page at a time, so a
// job of a million objects is never held in memory at once.
func (l *Ledger) JobObjects(ctx context.Context, id string, fn func(JobObject) error) error {
	return l.JobObjectsFrom(ctx, id, 0, fn)
}

// JobObjectsFrom walks a job's objects as JobObjects does, from the one
// at offset skip (0 the first): a page deep in a job of a million objects
// reads only that page's records.
func (l *Ledger) JobObjectsFrom(ctx context.Context, id string, skip int64, fn func(JobObject) error) error {
	for shard := range l.shards {
		if skip > 0 {
			n, err := l.rdb.ZCard(ctx, l.jobXfersKey(shard, id)).Result()
			if err != nil {
				return fmt.Errorf("count objects of job %s: %w", id, err)
			}
			if skip >= n {
				skip -= n
				continue
			}
		}
		if err := l.jobObjects(ctx, shard, id, skip, fn); err != nil {
			return err
		}
		skip = 0
	}
	return nil
}

func (l *Ledger) jobObjects(ctx context.Context, shard int, id string, from int64, fn func(JobObject) error) error {
	const page = 500
	for start := from; ; start += page {
		ids, err := l.rdb.ZRange(ctx, l.jobXfersKey(shard, id), start, start+page-1).Result()
		if err != nil {
			return fmt.Errorf("list objects of job %s: %w", id, err)
		}
		if len(ids) == 0 {
			return nil
		}
		pipe := l.rdb.Pipeline()
		reads := make([]*redis.MapStringStringCmd, len(ids))
		skipped := make([]*redis.BoolCmd, len(ids))
		for i, x := range ids {
			reads[i] = pipe.HGetAll(ctx, l.xferKey(x))
			skipped[i] = pipe.SIsMember(ctx, l.jobSkippedKey(shard, id), x)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("read objects of job %s: %w", id, err)
		}
		for i := range ids {
			var o JobObject
			if len(reads[i].Val()) == 0 {
				continue // expired
			}
			if err := reads[i].Scan(&o.Transfer); err != nil {
				return fmt.Errorf("decode transfer %s: %w", ids[i], err)
			}
			o.JobState = o.State
			if skipped[i].Val() && o.State == Success {
				o.JobState = Skipped
			}
			if err := fn(o); err != nil {
				return err
			}
		}
	}
}

// Chunk is what is recorded of a landed chunk.
type Chunk struct {
	CRC uint64 // of its bytes, in the algorithm the transfer's chunks use
	// PartETag is the ETag S3 gave the upload part the chunk became, for
	// a transfer to S3.
	PartETag string
}

// Chunks returns the record of each landed chunk, by index.
func (l *Ledger) Chunks(ctx context.Context, id string) (map[int64]Chunk, error) {
	m, err := l.rdb.HGetAll(ctx, l.xferChunksKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("read chunks of transfer %s: %w", id, err)
	}
	out := make(map[int64]Chunk, len(m))
	for k, v := range m {
		crc, etag, _ := strings.Cut(v, ":")
		i, err1 := strconv.ParseInt(k, 10, 64)
		c, err2 := strconv.ParseUint(crc, 16, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("transfer %s: bad chunk record %q=%q", id, k, v)
		}
		out[i] = Chunk{CRC: c, PartETag: etag}
	}
	return out, nil
}

// MissingChunks returns, in order, the indexes of the transfer's chunks that
// have not landed.
func (l *Ledger) MissingChunks(ctx context.Context, t Transfer) ([]int64, error) {
	done, err := l.rdb.HKeys(ctx, l.xferChunksKey(t.ID)).Result()
	if err != nil {
		return nil, fmt.Errorf("read chunks of transfer %s: %w", t.ID, err)
	}
	have := make(map[int64]bool, len(done))
	for _, k := range done {
		if i, err := strconv.ParseInt(k, 10, 64); err == nil {
			have[i] = true
		}
	}
	var missing []int64
	for i := range t.Chunks {
		if !have[i] {
			missing = append(missing, i)
		}
	}
	return missing, nil
}

func (l *Ledger) ttlSeconds() int64 { return max(int64(l.ttl/time.Second), 1) }

// Attach modes: what the enqueuer decided to do with an object.
const (
	ModeCreate  = "create"  // no record: create it queued (or failed, with a cause)
	ModePresent = "present" // no record, but the file is there (--sync): create it done, skipped
	ModeAttach  = "attach"  // queued or running: follow it
	ModeSkip    = "skip"    // succeeded and its file is still there
	ModeRestart = "restart" // failed, cancelled, or succeeded but its file is gone
)

// AttachRequest asks to add a transfer to a job.
type AttachRequest struct {
	Job      string
	Mode     string
	Expect   Transfer // the record as read: its State and Gen must still hold
	New      Transfer // fields written on create and restart
	Cause    string   // on create: record the transfer failed with this cause
	KeepData bool     // on restart: keep landed chunks (retry fetches only the rest)
}

// Attach adds a transfer to a job as req.Mode says, provided the record is
// still as req.Expect describes; otherwise it returns ErrConflict and the
// caller reads again. It returns the transfer's state and generation.
func (l *Ledger) Attach(ctx context.Context, req AttachRequest, now time.Time) (state string, gen int64, err error) {
	keys, args := l.attachArgs(req, now)
	r := attachResult(req, attachScript.Run(ctx, l.rdb, keys, args...))
	return r.State, r.Gen, r.Err
}

// AttachResult is the outcome of one request of AttachMany.
type AttachResult struct {
	State string
	Gen   int64
	Err   error // ErrConflict when the record was not as expected
}

// AttachMany runs many attach requests in one round trip (a pipeline), for
// the objects of a listing page; each result is as Attach would return it.
func (l *Ledger) AttachMany(ctx context.Context, reqs []AttachRequest, now time.Time) ([]AttachResult, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	if err := attachScript.Load(ctx, l.rdb).Err(); err != nil { // EVALSHA in a pipeline cannot fall back to EVAL
		return nil, fmt.Errorf("load attach script: %w", err)
	}
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(reqs))
	for i, req := range reqs {
		keys, args := l.attachArgs(req, now)
		cmds[i] = attachScript.EvalSha(ctx, pipe, keys, args...)
	}
	_, _ = pipe.Exec(ctx) // errors are per command
	out := make([]AttachResult, len(reqs))
	for i, c := range cmds {
		out[i] = attachResult(reqs[i], c)
	}
	return out, nil
}

func (l *Ledger) attachArgs(req AttachRequest, now time.Time) ([]string, []any) {
	id := req.New.ID
	expectGen := ""
	if req.Expect.State != "" {
		expectGen = strconv.FormatInt(req.Expect.Gen, 10)
	}
	clear := "1"
	if req.KeepData {
		clear = "0"
	}
	args := []any{req.Mode, req.Expect.State, expectGen, req.Job, id, now.UnixMilli(), l.ttlSeconds(), req.Cause, clear}
	switch req.Mode {
	case ModeCreate, ModePresent:
		// A new record holds only the fields that are set: an absent
		// field reads as empty, and a million queued objects keep
		// their memory (a third of a small object's record was empty).
		args = appendSet(args, transferFields(req.New))
	case ModeRestart:
		args = append(args, transferFields(req.New)...) // every field: a restart clears what is no longer set
	}
	shard := l.ShardOf(id)
	return []string{l.xferKey(id), l.xferChunksKey(id), l.xferJobsKey(id), l.jobKey(shard, req.Job), l.jobXfersKey(shard, req.Job),
		l.jobSkippedKey(shard, req.Job), l.destKey(shard, req.New.Dest)}, args
}

func attachResult(req AttachRequest, c *redis.Cmd) AttachResult {
	res, err := c.Slice()
	if err != nil {
		return AttachResult{Err: fmt.Errorf("attach %s to job %s: %w", req.New.Source(), req.Job, err)}
	}
	var r AttachResult
	r.State, _ = res[1].(string)
	r.Gen, _ = res[2].(int64)
	if res[0] == "conflict" {
		r.Err = fmt.Errorf("attach %s: %w", req.New.Source(), ErrConflict)
	}
	return r
}

// appendSet appends the pairs of fields whose value is not the zero value.
func appendSet(args []any, fields []any) []any {
	for i := 0; i < len(fields); i += 2 {
		switch v := fields[i+1].(type) {
		case string:
			if v == "" {
				continue
			}
		case int64:
			if v == 0 {
				continue
			}
		case int:
			if v == 0 {
				continue
			}
		case bool:
			if !v {
				continue
			}
		}
		args = append(args, fields[i], fields[i+1])
	}
	return args
}

// transferFields are the descriptive fields of a transfer, as field/value
// pairs for HSET.
func transferFields(t Transfer) []any {
	return []any{
		"source_path", t.SourcePath, "source_pin", t.SourcePin, "remote", t.Remote, "remote_fp", t.RemoteFP, "dest_fp", t.DestFP, "server_side", t.ServerSide, "delete", t.Delete, "bucket", t.Bucket, "key", t.Key, "version_id", t.VersionID, "etag", t.ETag,
		"size", t.Size, "chunk_size", t.ChunkSize, "chunks", t.Chunks, "parts", t.Parts, "dest", t.Dest,
		"last_modified", t.LastModified, "checksum_algorithm", t.ChecksumAlgorithm,
		"checksum_type", t.ChecksumType, "checksum", t.Checksum, "checksum_known", t.ChecksumKnown,
		"verify", t.Verify, "overwrite", t.Overwrite, "no_head", t.NoHead, "queue", t.Queue,
		"request_payer", t.RequestPayer, "expected_owner", t.ExpectedOwner, "ssec_key_md5", t.SSECKeyMD5,
		"write", t.WriteOpts,
	}
}

// ChunkStart is what a chunk learns before it downloads.
type ChunkStart struct {
	State     string // Running when the chunk should go ahead
	PartReady bool   // the part file has been created
	PartToken string // its token, once created
	PartHost  string // the worker that created it
	// SourceETag is the ETag earlier chunks saw, for a transfer enqueued
	// without one.
	SourceETag string
}

// Chunk states StartChunk reports besides the transfer's own.
const (
	ChunkStale  = "stale"  // the task belongs to an earlier generation
	ChunkGone   = "gone"   // no record: expired, or the task is forged
	ChunkLanded = "landed" // this chunk is recorded already
)

// StartChunk moves a queued transfer to running and counts an attempt. A
// chunk sees ChunkStale, ChunkGone or ChunkLanded instead of Running when
// it has nothing to download.
func (l *Ledger) StartChunk(ctx context.Context, id string, gen, index int64, now time.Time) (ChunkStart, error) {
	res, err := startChunkScript.Run(ctx, l.rdb, []string{l.xferKey(id), l.xferChunksKey(id)}, gen, now.UnixMilli(), index).StringSlice()
	if err != nil {
		return ChunkStart{}, fmt.Errorf("start chunk of transfer %s: %w", id, err)
	}
	return ChunkStart{State: res[0], PartReady: res[1] == "1", PartToken: res[2], PartHost: res[3], SourceETag: res[4]}, nil
}

// Part is the part file a transfer's chunks write, as PartReady records
// it: the first worker to record its own wins.
type Part struct {
	State string // the transfer's: anything but Running or Queued means the part file should go
	Token string // the winning part file's token
	Host  string // the worker that created it
}

// PartReady records that a worker created the transfer's part file with
// the given token, unless another worker recorded one first; either way it
// returns the one every chunk is to write. Once recorded, a part file is
// never created again, so a removed one is not resurrected with holes.
func (l *Ledger) PartReady(ctx context.Context, id string, gen int64, token, host string) (Part, error) {
	res, err := partReadyScript.Run(ctx, l.rdb, []string{l.xferKey(id)}, gen, token, host).StringSlice()
	if err != nil {
		return Part{}, fmt.Errorf("record part file of transfer %s: %w", id, err)
	}
	return Part{State: res[0], Token: res[1], Host: res[2]}, nil
}

// Claim is the outcome of ClaimPart.
type Claim struct {
	Held bool // the caller holds the claim
	// Since is when an earlier claim of this generation was taken (zero if
	// none was): a holder that died between creating the part and
	// recording it left one made after then.
	Since time.Time
}

// ClaimPart lets one worker at a time make a transfer's part (its
// multipart upload, whose creation costs requests and leaves an upload to
// abort when it loses): it reports whether the caller holds the claim,
// which lapses after ttl (its holder died) or when released, and when an
// earlier claim was taken. The time of each claim is kept in the record
// (part_claimed), so that a holder that died leaves a trace.
func (l *Ledger) ClaimPart(ctx context.Context, id string, gen int64, who string, ttl time.Duration) (Claim, error) {
	res, err := claimPartScript.Run(ctx, l.rdb, []string{l.claimKey(id, gen), l.xferKey(id)}, who, ttl.Milliseconds(), time.Now().UnixMilli(), gen).Int64Slice()
	if err != nil {
		return Claim{}, fmt.Errorf("claim the part of transfer %s: %w", id, err)
	}
	c := Claim{Held: res[0] == 1}
	if res[1] > 0 {
		c.Since = time.UnixMilli(res[1])
	}
	return c, nil
}

// ReleasePart gives up a claim ClaimPart granted to who: only its own, so
// a holder whose claim lapsed does not drop the next one's.
func (l *Ledger) ReleasePart(ctx context.Context, id string, gen int64, who string) error {
	if err := releaseClaimScript.Run(ctx, l.rdb, []string{l.claimKey(id, gen)}, who).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("release the part claim of transfer %s: %w", id, err)
	}
	return nil
}

func (l *Ledger) claimKey(id string, gen int64) string {
	return l.xferKey(id) + ":claim:" + strconv.FormatInt(gen, 10)
}

// NoteUpload records that the fleet created a multipart upload for a
// transfer, for as long as records are kept: enqueue uploads tells the
// fleet's uploads from other tools' by it.
func (l *Ledger) NoteUpload(ctx context.Context, uploadID, transfer string) error {
	if err := l.rdb.Set(ctx, uploadKey(uploadID), transfer, l.ttl).Err(); err != nil {
		return fmt.Errorf("note upload of transfer %s: %w", transfer, err)
	}
	return nil
}

// UploadOwners returns the transfer each of the given uploads was created
// for, by upload ID; uploads the fleet did not create (or whose note
// expired) are absent.
func (l *Ledger) UploadOwners(ctx context.Context, ids []string) (map[string]string, error) {
	out := map[string]string{}
	if len(ids) == 0 {
		return out, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = uploadKey(id)
	}
	vals, err := l.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("read upload notes: %w", err)
	}
	for i, v := range vals {
		if s, ok := v.(string); ok && s != "" {
			out[ids[i]] = s
		}
	}
	return out, nil
}

func uploadKey(id string) string { return prefix + "upload:" + id }

// Landing is one chunk that landed, as its writer saw it.
type Landing struct {
	Index  int64
	Part   string // the token of the part file it was written to
	CRC    uint64 // of its bytes, in the algorithm the transfer's chunks use
	Length int64
	// ETag is the ETag of the response, checked against the other chunks'
	// when the transfer was enqueued without one.
	ETag string
	// PartETag is the ETag of the upload part it became (a transfer to S3).
	PartETag string
	// Took is how long the chunk's run took, for ChunkTimes.
	Took time.Duration
}

// Outcomes of ChunkDone besides a count.
var (
	// ErrPartMismatch: the chunk was written to a part file other than the
	// transfer's (workers that do not share DEST, or a stale writer).
	ErrPartMismatch = errors.New("chunk written to another part file")
	// ErrSourceChanged: the chunk's response carried another ETag than the
	// transfer's other chunks.
	ErrSourceChanged = errors.New("source changed during the download")
)

// ChunkDone records that a chunk landed. Recording the same chunk again
// changes nothing. It returns how many chunks have landed and how many
// there are; landed is -1 when the transfer is no longer running in this
// generation. A chunk written to another part file than the recorded one
// is refused with ErrPartMismatch, and one whose ETag differs from the
// object's with ErrSourceChanged.
func (l *Ledger) ChunkDone(ctx context.Context, id string, gen int64, c Landing) (landed, total int64, err error) {
	res, err := chunkDoneScript.Run(ctx, l.rdb, []string{l.xferKey(id), l.xferChunksKey(id), l.xferJobsKey(id), l.xferTimesKey(id)},
		gen, c.Index, chunkValue(c), c.Length, c.Part, c.ETag, c.Took.Milliseconds(), time.Now().UnixMilli()).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("record chunk %d of transfer %s: %w", c.Index, id, err)
	}
	switch res[0] {
	case -2:
		return 0, 0, fmt.Errorf("record chunk %d of transfer %s: %w", c.Index, id, ErrPartMismatch)
	case -3:
		return 0, 0, fmt.Errorf("record chunk %d of transfer %s: %w", c.Index, id, ErrSourceChanged)
	}
	return res[0], res[1], nil
}

// ChunkTimes returns how long the transfer's landed chunks took, the
// median, and how many there are: a chunk running far longer than that
// is a straggler (see tasks).
func (l *Ledger) ChunkTimes(ctx context.Context, id string) (median time.Duration, n int64, err error) {
	k := l.xferTimesKey(id)
	if n, err = l.rdb.ZCard(ctx, k).Result(); err != nil || n == 0 {
		return 0, n, err
	}
	zs, err := l.rdb.ZRangeWithScores(ctx, k, n/2, n/2).Result()
	if err != nil || len(zs) == 0 {
		return 0, n, err
	}
	return time.Duration(zs[0].Score) * time.Millisecond, n, nil
}

// ChunkProgress records that bytes of a running chunk of generation gen
// have streamed so far, for progress finer than whole chunks: the
// transfer's Moving and its jobs' count them until the chunk lands (or the
// transfer ends). It reports, in the same round trip, whether the chunk
// has landed already (from a copy of it).
func (l *Ledger) ChunkProgress(ctx context.Context, id string, gen, index, bytes int64) (landed bool, err error) {
	n, err := chunkProgressScript.Run(ctx, l.rdb, []string{l.xferKey(id), l.xferChunksKey(id), l.xferJobsKey(id)}, gen, index, bytes).Int()
	if err != nil {
		return false, fmt.Errorf("record the progress of chunk %d of transfer %s: %w", index, id, err)
	}
	return n == 1, nil
}

// chunkValue is a chunk's record: its CRC in hex, and ":" and its upload
// part's ETag when it has one.
func chunkValue(c Landing) string {
	v := strconv.FormatUint(c.CRC, 16)
	if c.PartETag != "" {
		v += ":" + c.PartETag
	}
	return v
}

// Landed returns how many chunks of a running transfer have landed, of how
// many; landed is -1 when the transfer is not running in this generation.
func (l *Ledger) Landed(ctx context.Context, id string, gen int64) (landed, total int64, err error) {
	pipe := l.rdb.Pipeline()
	fields := pipe.HMGet(ctx, l.xferKey(id), "state", "gen", "chunks")
	n := pipe.HLen(ctx, l.xferChunksKey(id))
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, 0, fmt.Errorf("count chunks of transfer %s: %w", id, err)
	}
	v := fields.Val()
	state, _ := v[0].(string)
	g, _ := v[1].(string)
	c, _ := v[2].(string)
	total, _ = strconv.ParseInt(c, 10, 64)
	if state != Running || g != strconv.FormatInt(gen, 10) {
		return -1, total, nil
	}
	return n.Val(), total, nil
}

// Failing notes that a task of generation gen of the transfer failed and
// will be retried, and returns since when its tasks have been failing
// without a chunk landing (the first such failure); the zero time for a
// record of another generation, or one no longer running.
func (l *Ledger) Failing(ctx context.Context, id string, gen int64, now time.Time) (time.Time, error) {
	ms, err := failingScript.Run(ctx, l.rdb, []string{l.xferKey(id)}, gen, now.UnixMilli()).Int64()
	if err != nil || ms == 0 {
		return time.Time{}, err
	}
	return time.UnixMilli(ms), nil
}

// Fail marks a queued or running transfer failed with its cause. With
// clearData its landed chunks are forgotten too (the part file is gone or
// untrustworthy). It reports whether this call made the change.
func (l *Ledger) Fail(ctx context.Context, id string, gen int64, cause string, clearData bool, now time.Time) (bool, error) {
	clear := "0"
	if clearData {
		clear = "1"
	}
	return l.end(ctx, id, gen, Failed, cause, clear, now)
}

// Cancel marks a queued or running transfer cancelled and forgets its
// landed chunks (its part file is to be removed). It reports whether this
// call made the change.
func (l *Ledger) Cancel(ctx context.Context, id string, gen int64, now time.Time) (bool, error) {
	return l.end(ctx, id, gen, Cancelled, "cancelled by the user", "1", now)
}

// Result is what finalizing an object records.
type Result struct {
	Computed  string // the CRC computed over the bytes, as S3 prints it
	Algorithm string // Computed's algorithm
	Check     string // what was checked: crc64nvme, crc32c, md5, none, …
	Reason    string // with check none, why nothing was compared
}

// Succeed marks a transfer finalized and drops its chunk records. It
// reports whether this call made the change (false: it was already final).
func (l *Ledger) Succeed(ctx context.Context, id string, gen int64, r Result, now time.Time) (bool, error) {
	return l.end(ctx, id, gen, Success, "", "drop", now, "computed", r.Computed,
		"computed_algorithm", r.Algorithm, "check", r.Check, "check_reason", r.Reason)
}

func (l *Ledger) end(ctx context.Context, id string, gen int64, state, cause, chunks string, now time.Time, fields ...any) (bool, error) {
	args := append([]any{gen, state, now.UnixMilli(), cause, chunks, l.ttlSeconds()}, fields...)
	res, err := endScript.Run(ctx, l.rdb, []string{l.xferKey(id), l.xferChunksKey(id), l.xferJobsKey(id)}, args...).Slice()
	if err != nil {
		return false, fmt.Errorf("mark transfer %s %s: %w", id, state, err)
	}
	prev, _ := res[0].(string)
	changed := prev == Queued || prev == Running
	if changed {
		l.touchJobs(ctx, l.ShardOf(id), strs(res[1]))
	}
	return changed, nil
}

// BatchItem names one object of a batch task.
type BatchItem struct {
	ID  string
	Gen int64
}

// StartBatch starts the transfers of batch task batch in one round trip
// (one a shard they are in: the enqueuer makes batches of one shard) and
// returns each one's state: Running when it is to be downloaded (by this
// batch: an object whose record names another batch is that one's).
func (l *Ledger) StartBatch(ctx context.Context, batch string, items []BatchItem, now time.Time) ([]string, error) {
	states := make([]string, len(items))
	for _, at := range l.byShard(len(items), func(i int) string { return items[i].ID }) {
		keys := make([]string, len(at))
		args := []any{now.UnixMilli(), batch}
		for i, j := range at {
			keys[i] = l.xferKey(items[j].ID)
			args = append(args, items[j].Gen)
		}
		got, err := startBatchScript.Run(ctx, l.rdb, keys, args...).StringSlice()
		if err == nil && len(got) != len(at) {
			err = fmt.Errorf("%d states for %d transfers", len(got), len(at))
		}
		if err != nil {
			return nil, fmt.Errorf("start a batch of %d transfers: %w", len(items), err)
		}
		for i, j := range at {
			states[j] = got[i]
		}
	}
	return states, nil
}

// byShard groups the indexes 0…n-1 by the shard of the ID each names, in
// order.
func (l *Ledger) byShard(n int, id func(int) string) [][]int {
	if l.shards <= 1 {
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		return [][]int{all}
	}
	groups := make([][]int, l.shards)
	for i := range n {
		s := l.ShardOf(id(i))
		groups[s] = append(groups[s], i)
	}
	return slices.DeleteFunc(groups, func(g []int) bool { return len(g) == 0 })
}

// BatchResult is one object a batch task finalized.
type BatchResult struct {
	BatchItem
	Size int64
	Result
}

// SucceedBatch records the objects of a batch task finalized, in one round
// trip (a script per shard), and reports for each whether this call made
// the change.
func (l *Ledger) SucceedBatch(ctx context.Context, results []BatchResult, now time.Time) ([]bool, error) {
	if len(results) == 0 {
		return nil, nil
	}
	changed := make([]bool, len(results))
	for _, at := range l.byShard(len(results), func(i int) string { return results[i].ID }) {
		keys := make([]string, 0, 3*len(at))
		args := []any{now.UnixMilli(), l.ttlSeconds()}
		for _, j := range at {
			r := results[j]
			keys = append(keys, l.xferKey(r.ID), l.xferChunksKey(r.ID), l.xferJobsKey(r.ID))
			args = append(args, r.Gen, r.Size, r.Computed, r.Check, r.Reason, r.Algorithm)
		}
		res, err := succeedBatchScript.Run(ctx, l.rdb, keys, args...).Slice()
		if err == nil && len(res) != 2 {
			err = fmt.Errorf("reply %v", res)
		}
		if err != nil {
			return changed, fmt.Errorf("record a batch of %d transfers: %w", len(results), err)
		}
		out, _ := res[0].([]any)
		for i, j := range at {
			if i < len(out) {
				v, _ := out[i].(int64)
				changed[j] = v == 1
			}
		}
		l.touchJobs(ctx, l.ShardOf(results[at[0]].ID), strs(res[1]))
	}
	return changed, nil
}

// strs is a script's reply of strings as a slice.
func strs(v any) []string {
	vs, _ := v.([]any)
	out := make([]string, 0, len(vs))
	for _, x := range vs {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// SetBatch records the batch task that fetches these transfers.
func (l *Ledger) SetBatch(ctx context.Context, ids []string, batch string) error {
	pipe := l.rdb.Pipeline()
	for _, id := range ids {
		pipe.HSet(ctx, l.xferKey(id), "batch", batch)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("record batch %s: %w", batch, err)
	}
	return nil
}

// PendingBatch is a batch task whose objects have no records yet.
type PendingBatch struct {
	Job string
	ID  string // the batch task's ID
	// Cancel makes the records cancelled rather than queued.
	Cancel bool
	// Objects are the records to create; their Gen is 1.
	Objects []Transfer
}

// Pend counts a batch's objects in its job before they have records: n
// objects of bytes in all, whose batch task ID runs in queue, all of them
// in one shard. A batch is counted once, however often it is pended. The
// job then counts them as queued (Job.Pending), and the batch's first
// start creates their records (Materialize): until then a queued small
// object costs Redis nothing but its share of the batch task.
func (l *Ledger) Pend(ctx context.Context, job string, shard int, id, queue string, n int, bytes int64) error {
	entry := fmt.Sprintf("%d %d %s", n, bytes, queue)
	if err := pendScript.Run(ctx, l.rdb, []string{l.jobKey(shard, job), l.jobPendingKey(shard, job)}, id, entry, n, bytes).Err(); err != nil {
		return fmt.Errorf("count batch %s of %d objects in job %s: %w", id, n, job, err)
	}
	return nil
}

// Materialize creates the records of a pending batch's objects and attaches
// them to its job, as an enqueuer would have, in one step: the job then
// counts each of them once, as its record says. It reports false, and does
// nothing, when the batch was not pending (done already, or forgotten).
// The objects are all in one shard, as Pend counted them.
func (l *Ledger) Materialize(ctx context.Context, b PendingBatch, now time.Time) (bool, error) {
	if len(b.Objects) == 0 {
		return false, fmt.Errorf("create the records of batch %s (job %s): no objects", b.ID, b.Job)
	}
	shard := l.ShardOf(b.Objects[0].ID)
	if err := materializeScript.Load(ctx, l.rdb).Err(); err != nil {
		return false, fmt.Errorf("load materialize script: %w", err)
	}
	keys := []string{l.jobKey(shard, b.Job), l.jobXfersKey(shard, b.Job), l.jobSkippedKey(shard, b.Job), l.jobPendingKey(shard, b.Job)}
	cancel := "0"
	if b.Cancel {
		cancel = "1"
	}
	args := []any{b.ID, b.Job, now.UnixMilli(), l.ttlSeconds(), cancel, ""}
	for _, t := range b.Objects {
		if l.ShardOf(t.ID) != shard {
			return false, fmt.Errorf("create the records of batch %s (job %s): its objects are in shards %d and %d",
				b.ID, b.Job, shard, l.ShardOf(t.ID))
		}
		keys = append(keys, l.xferKey(t.ID), l.xferChunksKey(t.ID), l.xferJobsKey(t.ID), l.destKey(shard, t.Dest))
		fields := appendSet(nil, append(transferFields(t), "batch", t.Batch))
		args = append(args, t.ID, len(fields))
		args = append(args, fields...)
	}
	ok, err := materializeScript.EvalSha(ctx, l.rdb, keys, args...).Int()
	if err != nil {
		return false, fmt.Errorf("create the records of batch %s (job %s): %w", b.ID, b.Job, err)
	}
	if ok == 2 {
		l.touchJobs(ctx, shard, []string{b.Job}) // records cancelled at once end there and then
	}
	return ok > 0, nil
}

// PendingEntry is a batch whose objects have no records yet.
type PendingEntry struct {
	ID      string // the batch task
	Shard   int    // its objects' shard
	Queue   string
	Objects int64
	Bytes   int64
}

// PendingBatches lists a job's batches whose objects have no records yet.
func (l *Ledger) PendingBatches(ctx context.Context, job string) ([]PendingEntry, error) {
	reads, err := l.readShards(ctx, func(n int) string { return l.jobPendingKey(n, job) })
	if err != nil {
		return nil, fmt.Errorf("read pending batches of job %s: %w", job, err)
	}
	var out []PendingEntry
	for shard, r := range reads {
		for id, v := range r.Val() {
			e := PendingEntry{ID: id, Shard: shard}
			if _, err := fmt.Sscanf(v, "%d %d %s", &e.Objects, &e.Bytes, &e.Queue); err != nil {
				return nil, fmt.Errorf("pending batch %s of job %s: %q: %w", id, job, v, err)
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// ForgetPending ends a pending batch of a shard whose task no longer
// exists (deleted, or lost with Redis): its objects, never recorded, count
// as cancelled in its job. It reports whether the batch was pending.
func (l *Ledger) ForgetPending(ctx context.Context, job string, shard int, id string) (bool, error) {
	ok, err := materializeScript.Run(ctx, l.rdb, []string{l.jobKey(shard, job), l.jobXfersKey(shard, job), l.jobSkippedKey(shard, job), l.jobPendingKey(shard, job)},
		id, job, time.Now().UnixMilli(), l.ttlSeconds(), "0", "forget").Int()
	if err != nil {
		return false, fmt.Errorf("forget pending batch %s of job %s: %w", id, job, err)
	}
	if ok == 1 {
		l.touchJobs(ctx, shard, []string{job}) // its objects count as ended
	}
	return ok == 1, nil
}

// MarkCancelled notes that a job is being cancelled: the records its
// pending batches make from now on are cancelled at once. Retry and a new
// run of the job clear it. In a sharded ledger the mark is in the job's
// record of every shard, made if need be (a listing still running may pend
// batches in a shard it has not reached yet), with the retention.
func (l *Ledger) MarkCancelled(ctx context.Context, job string, on bool, now time.Time) error {
	pipe := l.rdb.Pipeline()
	for shard := range l.shards {
		switch {
		case !on:
			pipe.HDel(ctx, l.jobKey(shard, job), "cancel")
		case shard == 0:
			pipe.HSet(ctx, l.jobKey(shard, job), "cancel", now.UnixMilli())
		default:
			markScript.Eval(ctx, pipe, []string{l.jobKey(shard, job)}, "cancel", now.UnixMilli(), l.ttlSeconds())
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("mark job %s cancelled: %w", job, err)
	}
	return nil
}

// Exist reports, for each transfer ID, whether it has a record: one round
// trip for a page of IDs.
func (l *Ledger) Exist(ctx context.Context, ids []string) ([]bool, error) {
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.Exists(ctx, l.xferKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("look up %d transfers: %w", len(ids), err)
	}
	out := make([]bool, len(ids))
	for i, c := range cmds {
		out[i] = c.Val() > 0
	}
	return out, nil
}

// Leave takes a job out of a transfer that is still queued or running
// and that other jobs wait for too, uncounting it from the job: the job no
// longer waits for it, and the others still do. It reports false, and
// changes nothing, when the transfer is final or the job is its only one
// (then cancel it).
func (l *Ledger) Leave(ctx context.Context, job, id string) (bool, error) {
	shard := l.ShardOf(id)
	n, err := leaveScript.Run(ctx, l.rdb, []string{l.xferKey(id), l.xferJobsKey(id), l.jobKey(shard, job), l.jobXfersKey(shard, job)}, job, id).Int()
	if err != nil {
		return false, fmt.Errorf("take job %s out of transfer %s: %w", job, id, err)
	}
	if n == 1 {
		// A job left with nothing to wait for starts its retention.
		if j, err := l.GetJob(ctx, job); err == nil && j.Done() {
			l.touchJobs(ctx, -1, []string{job})
		}
	}
	return n == 1, nil
}

// Standing is where a transfer stands: its state (empty when it has no
// record) and its bytes landed and streaming.
type Standing struct {
	State             string
	BytesDone, Moving int64
}

// Standings reads where each transfer stands, in one round trip.
func (l *Ledger) Standings(ctx context.Context, ids []string) ([]Standing, error) {
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HMGet(ctx, l.xferKey(id), "state", "bytes_done", "moving")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read the state of %d transfers: %w", len(ids), err)
	}
	out := make([]Standing, len(ids))
	for i, c := range cmds {
		v := c.Val()
		out[i].State, _ = v[0].(string)
		done, _ := v[1].(string)
		moving, _ := v[2].(string)
		out[i].BytesDone, _ = strconv.ParseInt(done, 10, 64)
		out[i].Moving, _ = strconv.ParseInt(moving, 10, 64)
	}
	return out, nil
}

// Bucket is the bytes a job landed in one span of time.
type Bucket struct {
	Start time.Time
	Bytes int64
}

// BucketWidth is the span of a Bucket; a job keeps the last 360 (an
// hour).
const BucketWidth = 10 * time.Second

// Throughput returns the bytes the job landed in each bucket of its last
// hour that has any, oldest first (added up over the shards).
func (l *Ledger) Throughput(ctx context.Context, job string) ([]Bucket, error) {
	reads, err := l.readShards(ctx, func(n int) string { return l.jobTPKey(n, job) })
	if err != nil {
		return nil, fmt.Errorf("read the throughput of job %s: %w", job, err)
	}
	by := map[int64]int64{}
	var newest int64
	for _, r := range reads {
		for _, v := range r.Val() {
			var b, n int64
			if _, err := fmt.Sscanf(v, "%d %d", &b, &n); err != nil {
				continue
			}
			by[b] += n
			newest = max(newest, b)
		}
	}
	out := make([]Bucket, 0, len(by))
	for _, b := range slices.Sorted(maps.Keys(by)) {
		if b > newest-360 { // older ones a slot still holds are a lap behind
			out = append(out, Bucket{Start: time.UnixMilli(b * BucketWidth.Milliseconds()), Bytes: by[b]})
		}
	}
	return out, nil
}
