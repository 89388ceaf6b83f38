package main

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// The enqueuer memory target: under 128 MiB for a listing of a
// million keys. A million real objects would take versitygw most of an
// hour to create, so a small S3 stand-in answers ListObjectsV2 with
// generated pages, and the enqueue records and queues every key in the
// suite's Redis (no worker runs: only the enqueue is measured).

const (
	listingBucket = "listing"
	listingPrefix = "gen/"
	listingSize   = 16 << 10 // small objects: the enqueue batches them
)

// listingWords vary the generated keys' names.
var listingWords = []string{"events", "frames", "ledger", "metrics", "orders", "photos", "sensor", "trace"}

// listingKey is the generated listing's i-th key: in order, as S3 lists.
func listingKey(i int) string {
	sum := md5.Sum([]byte(strconv.Itoa(i)))
	return fmt.Sprintf("%s%04d/%07d-%s.bin", listingPrefix, i/1000, i, listingWords[int(sum[1])%len(listingWords)])
}

// listingEpoch is the generated objects' earliest Last-Modified.
var listingEpoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// listingResult is one enqueue of the generated listing.
type listingResult struct {
	keys       int
	elapsed    time.Duration
	rss        int64 // the enqueue's peak RSS
	cpu        cpuUse
	redisBytes int64 // Redis's used_memory once the job is queued
	redisEmpty int64 // and before, in the emptied Redis
	err        error
}

// listingServer serves n generated keys under listingPrefix, a page of at
// most 1000 at a time; the continuation token is the next key's index.
type listingServer struct{ n int }

// listPage is the ListObjectsV2 response body.
type listPage struct {
	XMLName     xml.Name      `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListBucketResult"`
	Name        string        `xml:"Name"`
	Prefix      string        `xml:"Prefix"`
	KeyCount    int           `xml:"KeyCount"`
	MaxKeys     int           `xml:"MaxKeys"`
	IsTruncated bool          `xml:"IsTruncated"`
	NextToken   string        `xml:"NextContinuationToken,omitempty"`
	Contents    []listedEntry `xml:"Contents"`
}

type listedEntry struct {
	Key          string `xml:"Key"`
	LastModified string `xml:"LastModified"`
	ETag         string `xml:"ETag"`
	Size         int64  `xml:"Size"`
	StorageClass string `xml:"StorageClass"`
}

func (l listingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.Method != http.MethodGet || strings.Trim(r.URL.Path, "/") != listingBucket || q.Get("list-type") != "2" {
		w.WriteHeader(http.StatusNotImplemented)
		fmt.Fprintf(w, "<Error><Code>NotImplemented</Code><Message>only ListObjectsV2 of %s</Message></Error>", listingBucket)
		return
	}
	start := 0
	if t := q.Get("continuation-token"); t != "" {
		var err error
		if start, err = strconv.Atoi(t); err != nil || start < 0 {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, "<Error><Code>InvalidArgument</Code><Message>bad continuation token</Message></Error>")
			return
		}
	}
	maxKeys := 1000
	if m, err := strconv.Atoi(q.Get("max-keys")); err == nil && m > 0 && m < maxKeys {
		maxKeys = m
	}
	if !strings.HasPrefix(listingPrefix, q.Get("prefix")) && !strings.HasPrefix(q.Get("prefix"), listingPrefix) {
		start = l.n // nothing under another prefix
	}
	end := min(start+maxKeys, l.n)
	page := listPage{Name: listingBucket, Prefix: q.Get("prefix"), MaxKeys: maxKeys, IsTruncated: end < l.n}
	for i := start; i < end; i++ {
		// Keys, ETags and times as varied as real ones (an ETag is an MD5:
		// it does not compress), so that the compressed batch payloads
		// that hold the queued objects are not flattered.
		sum := md5.Sum([]byte(strconv.Itoa(i)))
		page.Contents = append(page.Contents, listedEntry{
			Key:          listingKey(i),
			LastModified: listingEpoch.Add(time.Duration(binary.BigEndian.Uint32(sum[2:6])) * time.Millisecond).Format("2006-01-02T15:04:05.000Z"),
			ETag:         fmt.Sprintf(`"%x"`, sum), Size: listingSize + int64(sum[6]), StorageClass: "STANDARD",
		})
	}
	page.KeyCount = len(page.Contents)
	if page.IsTruncated {
		page.NextToken = strconv.Itoa(end)
	}
	w.Header().Set("Content-Type", "application/xml")
	_, _ = w.Write([]byte(xml.Header))
	_ = xml.NewEncoder(w).Encode(page)
}

// runListing enqueues the generated listing of n keys into an empty
// Redis and measures the enqueue; Redis is emptied again after.
func (s *suite) runListing(ctx context.Context, n int) (res listingResult) {
	res.keys = n
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		res.err = err
		return res
	}
	srv := &http.Server{Handler: listingServer{n: n}, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	defer func() { _ = s.srv.rdb.FlushDB(context.WithoutCancel(ctx)).Err() }()
	if err := s.srv.rdb.FlushDB(ctx).Err(); err != nil {
		res.err = fmt.Errorf("flush redis: %w", err)
		return res
	}
	if res.redisEmpty, err = usedMemory(ctx, s.srv.rdb); err != nil {
		res.err = err
		return res
	}
	out := filepath.Join(s.tmp, "out", "listing")
	env := append(cleanEnv(),
		"S3FLEET_REDIS=redis://"+s.srv.redisAddr+"/0", "S3FLEET_ENDPOINT=http://"+l.Addr().String(),
		"S3FLEET_PATH_STYLE=true", "S3FLEET_REGION="+region, "S3FLEET_LOG_LEVEL=warn")
	sp := spec{name: "enqueue", bin: s.opt.bin("enqueue"),
		args: []string{"s3://" + listingBucket + "/" + listingPrefix, out + "/", "--quiet", "--job", "listing"},
		env:  env, dir: s.tmp, log: filepath.Join(s.tmp, "listing-enqueue.log")}
	cmd, logf, err := sp.command()
	if err != nil {
		res.err = err
		return res
	}
	defer logf.Close()
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Signal(os.Interrupt) })
	defer stop()
	start := time.Now()
	if err = cmd.Start(); err == nil {
		err = cmd.Wait()
	}
	res.elapsed = time.Since(start)
	if err != nil {
		res.err = fmt.Errorf("enqueue: %w%s", err, logTail("enqueue", sp.log))
		return res
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	res.rss = ru.Maxrss << 10
	res.cpu = cpuUse{cmd.ProcessState.UserTime(), cmd.ProcessState.SystemTime()}
	if res.redisBytes, err = usedMemory(ctx, s.srv.rdb); err != nil {
		res.err = err
		return res
	}
	// Every key must have been recorded: the job says how many objects.
	objs, err := s.srv.rdb.HGet(ctx, "{s3fleet}:job:listing", "objects").Int()
	if err != nil || objs != n {
		res.err = errors.Join(fmt.Errorf("the job records %d objects, want %d", objs, n), err)
	}
	return res
}

// usedMemory is Redis's used_memory.
func usedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.InfoMap(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("redis info: %w", err)
	}
	return strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
}

// perKey is the Redis memory each queued key costs, in bytes.
func (r listingResult) perKey() float64 {
	return float64(r.redisBytes-r.redisEmpty) / float64(r.keys)
}

// report is the report's section on the listing.
func (r listingResult) report() string {
	if r.keys == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## enqueue of a generated listing of %d keys\n\n", r.keys)
	if r.err != nil {
		fmt.Fprintf(&b, "Failed: %s\n\n", oneLine(r.err.Error(), 400))
		return b.String()
	}
	met := "no"
	if r.rss < 128<<20 {
		met = "yes"
	}
	rows := [][]string{{
		strconv.Itoa(r.keys), fmt.Sprintf("%.1f", r.elapsed.Seconds()), fmt.Sprintf("%.0f", float64(r.keys)/r.elapsed.Seconds()),
		fmt.Sprintf("%.1f", r.cpu.total().Seconds()), mib(float64(r.rss)), met, mib(float64(r.redisBytes)), fmt.Sprintf("%.0f", r.perKey()),
	}}
	b.WriteString(table([]string{"keys", "s", "keys/s", "enqueue CPU-s", "enqueue peak RSS MiB", "< 128 MiB", "Redis used_memory MiB", "Redis B per queued key"}, rows))
	fmt.Fprintf(&b, "\nA stand-in S3 server in the suite answers ListObjectsV2 with generated pages of 1000 keys of about %d KiB each "+
		"(a million real objects would take versitygw most of an hour to create), with keys, ETags (MD5s) and times as varied as real ones; "+
		"the enqueue counts every key in its job and queues its batch tasks in the suite's Redis, with no worker running. "+
		"Redis B per queued key is used_memory after the enqueue, less that of the emptied Redis before it, per key: "+
		"the batch tasks that hold the objects (compressed), and the job.\n\n", listingSize>>10)
	return b.String()
}
