// Package config loads s3fleet's settings into one typed struct from, in
// rising order of precedence: built-in defaults, a YAML file (s3fleet.yaml in
// the working directory, or --config), S3FLEET_* environment variables, and
// command-line flags. It is the only package that imports viper.
package config

import (
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/dustin/go-humanize"
	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/s3fleet/s3fleet/location"
)

// EnvPrefix is the prefix of every environment variable s3fleet reads.
const EnvPrefix = "S3FLEET"

// Size is a byte count that accepts human forms such as "16MiB" or "8M".
type Size int64

// String renders the size in IEC units.
func (s Size) String() string { return humanize.IBytes(uint64(s)) }

// Config is every setting of the enqueuer and the worker.
type Config struct {
	// Redis is the URL of the queue: redis://, rediss:// (TLS),
	// redis-sentinel:// or redis-cluster://.
	Redis string `mapstructure:"redis"`
	// RedisCAFile is a PEM file of CAs to trust for rediss:// (default: the
	// system's).
	RedisCAFile string `mapstructure:"redis_ca_file"`
	// RedisShards spreads the fleet's records over this many hash tags, so
	// that a Redis Cluster spreads them over its nodes (ledger.Shards).
	// Every worker and enqueuer of a fleet uses the same value.
	RedisShards int `mapstructure:"redis_shards"`
	// Endpoint is the S3 endpoint URL; empty means AWS.
	Endpoint string `mapstructure:"endpoint"`
	// Region is the S3 region.
	Region string `mapstructure:"region"`
	// PathStyle addresses buckets as http://host/bucket (MinIO, versitygw).
	PathStyle bool `mapstructure:"path_style"`
	// ChunkSize is the length of each ranged GET.
	ChunkSize Size `mapstructure:"chunk_size"`
	// Verify is off, auto or required: what an object's bytes must pass
	// (see the assembler package).
	Verify string `mapstructure:"verify"`
	// Host names this worker in records and causes; empty: the host name.
	Host string `mapstructure:"host"`
	// VerifyDisk reads each finished file back from the device before it
	// is renamed to its final name, and fails it unless the CRC matches.
	VerifyDisk bool `mapstructure:"verify_disk"`
	// Threshold is the size below which an object is fetched in one task.
	Threshold Size `mapstructure:"threshold"`
	// BatchMaxObject: objects up to this size are fetched whole, many to a
	// batch task (0: never); BatchObjects and BatchBytes bound a batch.
	BatchMaxObject Size `mapstructure:"batch_max_object"`
	BatchObjects   int  `mapstructure:"batch_objects"`
	BatchBytes     Size `mapstructure:"batch_bytes"`
	// Concurrency is the number of chunk tasks one worker runs at once.
	Concurrency int `mapstructure:"concurrency"`
	// MaxRetries is how often a failed chunk task is retried at most.
	MaxRetries int `mapstructure:"max_retries"`
	// RetryFor is how long an object's tasks are retried with no chunk
	// landing before it fails (0: until max_retries).
	RetryFor time.Duration `mapstructure:"retry_for"`
	// StragglerAfter is how long a chunk runs before it may count as a
	// straggler and get a speculative copy on another worker (0: never).
	StragglerAfter time.Duration `mapstructure:"straggler_after"`
	// PollInterval is how long an idle worker waits between looks at its
	// queues: each look is one Redis call per queue.
	PollInterval time.Duration `mapstructure:"poll_interval"`
	// RetryDelay is the first retry's delay; it doubles up to a minute.
	RetryDelay time.Duration `mapstructure:"retry_delay"`
	// ChunkTimeout bounds one chunk task.
	ChunkTimeout time.Duration `mapstructure:"chunk_timeout"`
	// ConnectTimeout bounds dialling Redis and S3.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	// ReadTimeout is how long a GET body may stall before the chunk retries.
	ReadTimeout time.Duration `mapstructure:"read_timeout"`
	// ShutdownTimeout is how long a stopping worker lets chunks finish.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	// Retention keeps results and records this long.
	Retention time.Duration `mapstructure:"retention"`
	// Flush makes each chunk durable before it is recorded ("sync"), or
	// not at all ("none", for scratch data: the assembler skips its fsync
	// too).
	Flush string `mapstructure:"flush"`
	// KeepCache keeps downloaded chunks in the page cache; by default each
	// is written out when it ends and its pages dropped (tasks.ChunkHandler).
	KeepCache bool `mapstructure:"keep_cache"`
	// DirectIO says when a worker writes chunks with O_DIRECT: auto (on
	// ext4 and XFS), on or off (tasks.ChunkHandler).
	DirectIO string `mapstructure:"direct_io"`
	// Bandwidth caps a worker's download rate in bytes/s; 0: no cap.
	Bandwidth Size `mapstructure:"bandwidth"`
	// SSECKey is the SSE-C key (base64 of 32 bytes) a worker decrypts
	// with; SSECKeyFile holds it instead (raw or base64). Never logged.
	SSECKey     string `mapstructure:"sse_c_key"`
	SSECKeyFile string `mapstructure:"sse_c_key_file"`
	// AllowDest are the directories a worker may write under; a task
	// whose destination resolves elsewhere is refused. Empty: anywhere.
	AllowDest []string `mapstructure:"allow_dest"`
	// Remotes are other S3 endpoints, by name: NAME://bucket/key is an
	// object there, s3://bucket/key one on the top-level endpoint. Set in
	// the config file only.
	Remotes map[string]Remote `mapstructure:"remotes"`
	// AllowRead are the object URL prefixes (REMOTE://bucket/prefix) a
	// worker may read from; empty: whatever its credentials can read.
	AllowRead []string `mapstructure:"allow_read"`
	// AllowSource are the local directories a worker may upload files
	// from; empty: none.
	AllowSource []string `mapstructure:"allow_source"`
	// AllowDelete are the object URL prefixes a worker may delete under
	// (enqueue rm); empty: none.
	AllowDelete []string `mapstructure:"allow_delete"`
	// AllowWrite are the object URL prefixes a worker may write under;
	// empty: none (a worker writes to S3 only where it is told it may).
	AllowWrite []string `mapstructure:"allow_write"`
	// TaskKeyFile holds the keys that sign and check tasks (one a line,
	// the first signs): a worker with keys runs only tasks signed with
	// one of them. Empty: tasks are neither signed nor checked.
	TaskKeyFile string `mapstructure:"task_key_file"`
	// UI is the address of the worker's web UI (/ui/), /metrics and
	// /healthz; empty: none. A missing host means loopback.
	UI string `mapstructure:"ui"`
	// UIReadOnly serves the UI without its buttons that change tasks.
	UIReadOnly bool `mapstructure:"ui_readonly"`
	// HealthAddr is the address of the worker's health listener: only
	// /healthz (liveness) and /readyz (readiness), for probes; empty: none.
	// A missing host means loopback.
	HealthAddr string `mapstructure:"health_addr"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `mapstructure:"log_level"`
	// LogFormat is text or json.
	LogFormat string `mapstructure:"log_format"`
}

// Remote is one S3 endpoint other than the top-level one.
type Remote struct {
	// Endpoint is its URL; empty means AWS.
	Endpoint string `mapstructure:"endpoint"`
	// Region is its region (default: the top-level region).
	Region string `mapstructure:"region"`
	// PathStyle addresses buckets as http://host/bucket.
	PathStyle bool `mapstructure:"path_style"`
	// Profile is the AWS profile (shared config and credentials files)
	// its credentials come from; empty: the default chain.
	Profile string `mapstructure:"profile"`
}

// RemoteNames are the configured remotes' names, sorted.
func (c Config) RemoteNames() []string {
	names := make([]string, 0, len(c.Remotes))
	for n := range c.Remotes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// setting is one key with its default, flag help and the programs using it.
type setting struct {
	key   string
	def   any
	usage string
	use   Program
}

// Program selects which settings a command exposes as flags.
type Program int

// The programs that read settings.
const (
	Enqueuer Program = 1 << iota
	Worker
	// Monitor is enqueue ui: the web UI and metrics, no tasks.
	Monitor
	Both = Enqueuer | Worker
)

// MinChunkSize is the smallest chunk_size accepted.
const MinChunkSize = 1 << 20

var settings = []setting{
	{"redis", "redis://127.0.0.1:6379/0", "Redis URL: redis://[user:pass@]host:port/db, rediss:// (TLS), redis-sentinel://, redis-cluster://h1:p1,h2:p2", Both},
	{"redis_ca_file", "", "PEM file of CAs to trust for rediss:// (default: the system's)", Both},
	{"redis_shards", 1, "hash tags the records are spread over, for a Redis Cluster (about one per node; the same on every worker and enqueuer)", Both},
	{"endpoint", "", "S3 endpoint URL (empty: AWS)", Both},
	{"region", "us-east-1", "S3 region", Both},
	{"path_style", false, "use path-style bucket addressing", Both},
	{"chunk_size", "32MiB", "bytes per ranged GET", Enqueuer},
	{"verify", "auto", "check the bytes: off, auto (every checksum that needs no second read) or required (re-read for the rest; fail what nothing verifies)", Enqueuer},
	{"host", "", "this worker's name in records and causes (default: the host name)", Worker},
	{"verify_disk", false, "read each finished file back from the device (O_DIRECT, or after dropping it from the page cache) and fail it unless its CRC is the downloaded one", Worker},
	{"threshold", "8MiB", "objects below this size are fetched in one task", Enqueuer},
	{"batch_max_object", "1MiB", "objects up to this size are fetched whole, many to a task (0: one task each)", Enqueuer},
	{"batch_objects", 100, "most objects in one batch task", Enqueuer},
	{"batch_bytes", "16MiB", "most bytes in one batch task", Enqueuer},
	{"concurrency", 16, "chunk tasks a worker (or enqueue --local) runs at once", Both},
	{"max_retries", 100, "most retries of a failed task (a safety net: retry_for decides)", Both},
	{"straggler_after", "10s", "a chunk running this long and 3 times its object's median gets a copy on another worker; the first to land wins (0: never)", Worker},
	{"retry_for", "15m", "how long an object's tasks are retried with no progress before it fails (0: until max_retries)", Worker},
	{"poll_interval", "200ms", "how long an idle worker waits between looks at its queues in Redis (one call per queue each); announced tasks (all that enqueue and the workers queue) are looked for at once, others (retries coming due) wait up to this long", Worker},
	{"retry_delay", "1s", "delay before the first retry; doubles up to 1m", Worker},
	{"chunk_timeout", "10m", "time limit of one chunk task", Both},
	{"connect_timeout", "5s", "time limit to connect to Redis or S3", Both},
	{"read_timeout", "60s", "time a GET body may stall before the chunk is retried", Worker},
	{"shutdown_timeout", "30s", "time a stopping worker lets running chunks finish", Worker},
	{"retention", "168h", "how long results and records are kept", Both},
	{"flush", "sync", "make each chunk durable before recording it: sync or none", Worker},
	{"direct_io", "auto", "write chunks with O_DIRECT, past the page cache: auto (on ext4 and XFS), on (wherever the filesystem takes it) or off; never with keep_cache", Worker},
	{"keep_cache", false, "keep downloaded chunks in the page cache (default: drop each chunk's pages when it ends; with flush=none it first waits for them to reach the device)", Worker},
	{"bandwidth", "0", "cap on a worker's download rate, bytes/s (e.g. 200MiB; 0: none)", Worker},
	{"sse_c_key", "", "SSE-C key, base64 (prefer sse_c_key_file or the env)", Worker},
	{"sse_c_key_file", "", "file holding the SSE-C key (32 bytes, raw or base64)", Worker},
	{"allow_dest", []string{}, "directory a worker may write under (repeatable; env: colon-separated like PATH)", Worker},
	{"allow_read", []string{}, "object URL prefix a worker may read from, e.g. s3://bucket/prefix/ (repeatable; env: comma-separated; empty: any)", Worker},
	{"allow_source", []string{}, "local directory a worker may upload files from (repeatable; env: colon-separated; empty: none)", Worker},
	{"allow_delete", []string{}, "object URL prefix a worker may delete under, e.g. s3://bucket/tmp/ (repeatable; env: comma-separated; empty: none)", Worker},
	{"allow_write", []string{}, "object URL prefix a worker may write to, e.g. r2://bucket/prefix/ (repeatable; env: comma-separated; empty: none)", Worker},
	{"task_key_file", "", "file of keys (one a line, the first signs) that sign every task and that a worker checks before running one; the same file on every enqueuer and worker", Both},
	{"ui", "", "serve the asynq web UI at /ui/, /metrics and /healthz on this address (e.g. 127.0.0.1:8080)", Worker | Monitor},
	{"ui_readonly", false, "serve the web UI read-only", Worker | Monitor},
	{"health_addr", "", "serve only /healthz (alive) and /readyz (taking tasks, Redis answers) on this address, for probes (e.g. 0.0.0.0:8081); no UI, no metrics", Worker},
	{"log_level", "info", "log level: debug, info, warn, error", Both},
	{"log_format", "text", "log format: text or json", Both},
}

// flagName turns a key into its flag: chunk_size becomes --chunk-size.
func flagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// AddFlags declares on fs the flags of program p, plus --config.
func AddFlags(fs *pflag.FlagSet, p Program) {
	fs.String("config", "", "config file (default: ./s3fleet.yaml if present)")
	for _, s := range settings {
		if s.use&p == 0 {
			continue
		}
		name := flagName(s.key)
		switch d := s.def.(type) {
		case bool:
			fs.Bool(name, d, s.usage)
		case int:
			fs.Int(name, d, s.usage)
		case []string:
			fs.StringArray(name, d, s.usage)
		default:
			fs.String(name, fmt.Sprint(d), s.usage)
		}
	}
}

// Defaults returns the built-in settings, ignoring files and environment.
func Defaults() Config {
	v := viper.New()
	for _, s := range settings {
		v.SetDefault(s.key, s.def)
	}
	c, err := decode(v)
	if err != nil {
		panic(fmt.Sprintf("config: built-in defaults do not decode: %v", err))
	}
	return c
}

// listHook splits a list given as one string (an environment variable):
// paths on ':' like PATH, object URLs (which have a ':' of their own) on
// commas or spaces.
func listHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to != reflect.TypeOf([]string{}) {
		return data, nil
	}
	s := data.(string)
	switch {
	case s == "":
		return []string{}, nil
	case strings.Contains(s, "://"):
		return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }), nil
	}
	return strings.Split(s, string(os.PathListSeparator)), nil
}

func decode(v *viper.Viper) (Config, error) {
	var c Config
	hook := mapstructure.ComposeDecodeHookFunc(mapstructure.StringToTimeDurationHookFunc(), sizeHook, listHook)
	if err := v.Unmarshal(&c, viper.DecodeHook(hook)); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	for _, l := range []*[]string{&c.AllowDest, &c.AllowSource, &c.AllowRead, &c.AllowWrite, &c.AllowDelete} {
		*l = slices.DeleteFunc(*l, func(s string) bool { return strings.TrimSpace(s) == "" })
		if len(*l) == 0 {
			*l = nil
		}
	}
	for name, r := range c.Remotes {
		if r.Region == "" {
			r.Region = c.Region
			c.Remotes[name] = r
		}
	}
	return c, nil
}

// Load reads the configuration for a command whose flags were declared with
// AddFlags and parsed into fs. Only flags the user set override the file and
// the environment.
func Load(fs *pflag.FlagSet) (Config, error) {
	v := viper.New()
	for _, s := range settings {
		v.SetDefault(s.key, s.def) // so env-only values survive Unmarshal (viper#761)
		if f := fs.Lookup(flagName(s.key)); f != nil {
			if err := v.BindPFlag(s.key, f); err != nil {
				return Config{}, fmt.Errorf("config: bind flag %s: %w", f.Name, err)
			}
		}
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()

	file := ""
	if f := fs.Lookup("config"); f != nil {
		file = f.Value.String()
	}
	if file == "" {
		file = os.Getenv(EnvPrefix + "_CONFIG")
	}
	if file != "" {
		v.SetConfigFile(file)
	} else {
		v.SetConfigName("s3fleet")
		v.SetConfigType("yaml")
		v.AddConfigPath(".")
	}
	if err := v.ReadInConfig(); err != nil {
		var notFound viper.ConfigFileNotFoundError
		if file != "" || !errors.As(err, &notFound) {
			return Config{}, fmt.Errorf("config: read %s: %w", describeFile(file), err)
		}
	}

	c, err := decode(v)
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func describeFile(file string) string {
	if file == "" {
		return "s3fleet.yaml"
	}
	return file
}

// sizeHook decodes "16MiB", "8M" or a plain number into a Size.
func sizeHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeFor[Size]() {
		return data, nil
	}
	switch d := data.(type) {
	case string:
		n, err := humanize.ParseBytes(strings.TrimSpace(d))
		if err != nil {
			return nil, fmt.Errorf("size %q: %w", d, err)
		}
		return Size(n), nil
	case int:
		return Size(d), nil
	case int64:
		return Size(d), nil
	case float64:
		return Size(d), nil
	}
	return data, nil
}

// Validate checks every field; its messages name the field at fault.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: "+format, append([]any{field}, args...)...))
	}
	if u, err := url.Parse(c.Redis); err != nil || !validRedisScheme(u.Scheme) {
		bad("redis", "want a redis://, rediss://, redis-sentinel:// or redis-cluster:// URL, got %q", RedactURL(c.Redis))
	}
	if c.RedisShards < 0 || c.RedisShards > 1024 { // 0: unset, one shard
		bad("redis_shards", "want 1 to 1024, got %d", c.RedisShards)
	}
	if c.Endpoint != "" {
		if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("endpoint", "want an http:// or https:// URL, got %q", RedactURL(c.Endpoint))
		}
	}
	switch c.Verify {
	case "", "off", "auto", "required": // empty: auto
	default:
		bad("verify", "want off, auto or required, got %q", c.Verify)
	}
	if c.ChunkSize < MinChunkSize {
		bad("chunk_size", "must be at least 1MiB (each chunk is a task and a record in Redis: 1 byte makes a million of them a MiB), got %s", humanize.IBytes(uint64(max(c.ChunkSize, 0))))
	}
	if c.Threshold < 0 {
		bad("threshold", "must not be negative, got %d", c.Threshold)
	}
	if c.BatchMaxObject < 0 {
		bad("batch_max_object", "must not be negative, got %d", c.BatchMaxObject)
	}
	if c.BatchObjects < 1 {
		bad("batch_objects", "must be at least 1, got %d", c.BatchObjects)
	}
	if c.BatchBytes < 1 {
		bad("batch_bytes", "must be positive, got %d", c.BatchBytes)
	}
	if c.Concurrency < 1 {
		bad("concurrency", "must be at least 1, got %d", c.Concurrency)
	}
	if c.PollInterval < 10*time.Millisecond || c.PollInterval > time.Minute {
		bad("poll_interval", "must be between 10ms and 1m, got %s", c.PollInterval)
	}
	if c.StragglerAfter < 0 {
		bad("straggler_after", "must not be negative, got %s", c.StragglerAfter)
	}
	if c.RetryFor < 0 {
		bad("retry_for", "must not be negative, got %s", c.RetryFor)
	}
	if c.MaxRetries < 0 {
		bad("max_retries", "must not be negative, got %d", c.MaxRetries)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"retry_delay", c.RetryDelay}, {"chunk_timeout", c.ChunkTimeout},
		{"connect_timeout", c.ConnectTimeout}, {"read_timeout", c.ReadTimeout},
		{"shutdown_timeout", c.ShutdownTimeout}, {"retention", c.Retention},
	} {
		if d.v <= 0 {
			bad(d.name, "must be a positive duration, got %s", d.v)
		}
	}
	if c.Bandwidth < 0 {
		bad("bandwidth", "must not be negative, got %d", c.Bandwidth)
	}
	if c.SSECKey != "" && c.SSECKeyFile != "" {
		bad("sse_c_key", "set sse_c_key or sse_c_key_file, not both")
	}
	if c.SSECKey != "" {
		if _, _, err := ParseSSECKey([]byte(c.SSECKey)); err != nil {
			bad("sse_c_key", "%v", err)
		}
	}
	for _, name := range c.RemoteNames() {
		r := c.Remotes[name]
		if err := location.ValidRemoteName(name); err != nil {
			bad("remotes", "%v", err)
		}
		if r.Endpoint != "" {
			if u, err := url.Parse(r.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad("remotes."+name+".endpoint", "want an http:// or https:// URL, got %q", RedactURL(r.Endpoint))
			}
		}
	}
	for _, l := range []struct {
		name string
		v    []string
	}{{"allow_read", c.AllowRead}, {"allow_write", c.AllowWrite}, {"allow_delete", c.AllowDelete}} {
		for _, raw := range l.v {
			if _, err := location.ParseURL(raw, c.RemoteNames()); err != nil {
				bad(l.name, "%v", err)
			}
		}
	}
	if c.DirectIO != "auto" && c.DirectIO != "on" && c.DirectIO != "off" {
		bad("direct_io", "want auto, on or off, got %q", c.DirectIO)
	}
	if c.Flush != "sync" && c.Flush != "none" {
		bad("flush", "want sync or none, got %q", c.Flush)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "want debug, info, warn or error, got %q", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("log_format", "want text or json, got %q", c.LogFormat)
	}
	return errors.Join(errs...)
}

func validRedisScheme(s string) bool {
	return s == "redis" || s == "rediss" || s == "redis-sentinel" || s == "redis-cluster" || s == "rediss-cluster"
}

// RedactURL hides the password of a URL so it can be logged or printed.
// Text that does not parse as a URL with an authority, yet holds an "@",
// may carry credentials where URL.Redacted cannot see them: it is hidden
// whole.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "(unparseable URL)"
	case u.User == nil && strings.Contains(raw, "@"):
		return "(URL hidden: it may hold credentials)"
	}
	return u.Redacted()
}

// SSECKeys returns the worker's SSE-C keys by the base64 MD5 that tasks
// carry: none, or the one configured.
func (c Config) SSECKeys() (map[string][]byte, error) {
	raw := []byte(c.SSECKey)
	if c.SSECKeyFile != "" {
		b, err := os.ReadFile(c.SSECKeyFile)
		if err != nil {
			return nil, fmt.Errorf("config: sse_c_key_file: %w", err)
		}
		raw = b
	}
	if len(raw) == 0 {
		return nil, nil
	}
	key, sum, err := ParseSSECKey(raw)
	if err != nil {
		return nil, fmt.Errorf("config: sse_c_key: %w", err)
	}
	return map[string][]byte{sum: key}, nil
}

// ParseSSECKey reads an SSE-C key, 32 raw bytes or their base64, and
// returns it with the base64 MD5 S3 takes as its fingerprint. Errors never
// quote the key.
func ParseSSECKey(b []byte) (key []byte, md5sum string, err error) {
	key = b
	if len(key) != 32 {
		dec, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if derr != nil || len(dec) != 32 {
			return nil, "", errors.New("want a 32-byte key, raw or base64")
		}
		key = dec
	}
	sum := md5.Sum(key)
	return key, base64.StdEncoding.EncodeToString(sum[:]), nil
}
