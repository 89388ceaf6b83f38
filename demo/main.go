// Command demo seeds an S3 server with sample objects and checks a download
// against them, for `make demo`. It reads the same S3FLEET_* settings and
// AWS_* credentials as the fleet.
//
//	go run ./demo seed   -bucket demo -src .demo/src -big 300MiB -small 200
//	go run ./demo verify .demo/src .demo/out
//	go run ./demo port            # print a free loopback port
//	go run ./demo wait HOST:PORT… # wait until each accepts connections
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/dustin/go-humanize"

	"github.com/s3fleet/s3fleet/internal/s3client"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: demo seed|verify ...")
	}
	switch args[0] {
	case "seed":
		return seed(ctx, args[1:])
	case "port":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
		return nil
	case "wait":
		for _, addr := range args[1:] {
			if err := waitListen(addr, 30*time.Second); err != nil {
				return err
			}
		}
		return nil
	case "verify":
		if len(args) != 3 {
			return errors.New("usage: demo verify SRC_DIR DST_DIR")
		}
		return verify(args[1], args[2])
	}
	return fmt.Errorf("unknown subcommand %q", args[0])
}

func seed(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	bucket := fs.String("bucket", "demo", "bucket to create")
	src := fs.String("src", ".demo/src", "local copy of what is uploaded")
	big := fs.String("big", "300MiB", "size of the large object")
	small := fs.Int("small", 200, "number of small objects under logs/")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bigSize, err := humanize.ParseBytes(*big)
	if err != nil {
		return err
	}
	c, err := s3client.New(ctx, s3client.Options{
		Endpoint: os.Getenv("S3FLEET_ENDPOINT"), Region: os.Getenv("S3FLEET_REGION"),
		PathStyle: os.Getenv("S3FLEET_PATH_STYLE") == "true", Concurrency: 4,
	})
	if err != nil {
		return err
	}
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: bucket}); err != nil && s3client.HTTPStatus(err) != 409 {
		return fmt.Errorf("create bucket %s: %w", *bucket, err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	files := map[string]int64{"big.bin": int64(bigSize), "logs/empty.log": 0}
	for i := range *small {
		files[fmt.Sprintf("logs/2026/day %02d/part-%04d ü.log", i%28+1, i)] = int64(rng.IntN(256 << 10))
	}
	for key, size := range files {
		path := filepath.Join(*src, filepath.FromSlash(key))
		if err := writeRandom(path, size, rng); err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: bucket, Key: aws.String(key), Body: f,
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
		f.Close()
		if err != nil {
			return fmt.Errorf("put s3://%s/%s: %w", *bucket, key, err)
		}
	}
	fmt.Printf("seeded s3://%s: big.bin (%s) and %d objects under logs/\n", *bucket, humanize.IBytes(bigSize), *small+1)
	return nil
}

func writeRandom(path string, size int64, rng *rand.Rand) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		for i := 0; i+8 <= int(n); i += 8 {
			v := rng.Uint64()
			for b := range 8 {
				buf[i+b] = byte(v >> (8 * b))
			}
		}
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
		left -= n
	}
	return f.Close()
}

// verify compares every file under src with the same path under dst.
func verify(src, dst string) error {
	var n, bytes int64
	var bad []string
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		a, sa, err := sum(path)
		if err != nil {
			return err
		}
		b, _, err := sum(filepath.Join(dst, rel))
		if err != nil || a != b {
			bad = append(bad, rel)
		}
		n++
		bytes += sa
		return nil
	})
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d files differ or are missing: %s", len(bad), n, strings.Join(bad[:min(len(bad), 5)], ", "))
	}
	fmt.Printf("verified: %d files, %s, every SHA-256 equal\n", n, humanize.IBytes(uint64(bytes)))
	return nil
}

func sum(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

func waitListen(addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not accept connections: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
