package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

const mib = 1 << 20

// Load reads the process environment and the working directory, so the tests
// that call it start with isolate: S3FLEET_* unset and an empty working
// directory. Those tests cannot be parallel themselves (t.Setenv, t.Chdir),
// but their subtests can when they change neither.

// isolate unsets every variable Load reads, for the rest of the test, and
// moves into an empty directory so no stray s3fleet.yaml is picked up.
func isolate(t *testing.T) {
	t.Helper()
	for _, name := range envNames() {
		t.Setenv(name, "") // restores the old value at cleanup
		if err := os.Unsetenv(name); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(t.TempDir())
}

func envNames() []string {
	names := []string{EnvPrefix + "_CONFIG"}
	for _, s := range settings {
		names = append(names, EnvPrefix+"_"+strings.ToUpper(s.key))
	}
	return names
}

// load declares the flags of program p, parses args and loads.
func load(t *testing.T, p Program, args ...string) (Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	AddFlags(fs, p)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return Load(fs)
}

// writeFile writes content to name in a fresh directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// defaults is the configuration with nothing set, written out by hand.
func defaults() Config {
	return Config{
		Redis:           "redis://127.0.0.1:6379/0",
		RedisShards:     1,
		Endpoint:        "",
		Region:          "us-east-1",
		PathStyle:       false,
		ChunkSize:       32 * mib,
		Verify:          "auto",
		Threshold:       8 * mib,
		BatchMaxObject:  mib,
		BatchObjects:    100,
		BatchBytes:      16 * mib,
		Concurrency:     16,
		MaxRetries:      100,
		RetryFor:        15 * time.Minute,
		StragglerAfter:  10 * time.Second,
		PollInterval:    200 * time.Millisecond,
		RetryDelay:      time.Second,
		ChunkTimeout:    10 * time.Minute,
		ConnectTimeout:  5 * time.Second,
		ReadTimeout:     60 * time.Second,
		ShutdownTimeout: 30 * time.Second,
		Retention:       168 * time.Hour,
		Flush:           "sync",
		DirectIO:        "auto",
		LogLevel:        "info",
		LogFormat:       "text",
	}
}

func TestLoadDefaults(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		name string
		p    Program
	}{{"enqueuer", Enqueuer}, {"worker", Worker}, {"both", Both}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := load(t, tc.p)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if want := defaults(); !reflect.DeepEqual(got, want) {
				t.Errorf("Load() =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
	t.Run("flag set without AddFlags", func(t *testing.T) {
		t.Parallel()
		got, err := Load(pflag.NewFlagSet("bare", pflag.ContinueOnError))
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if want := defaults(); !reflect.DeepEqual(got, want) {
			t.Errorf("Load() =\n%+v\nwant\n%+v", got, want)
		}
	})
}

// TestDefaults: Defaults ignores the environment and the working directory.
func TestDefaults(t *testing.T) {
	t.Setenv("S3FLEET_CONCURRENCY", "3")
	t.Chdir(t.TempDir())
	if err := os.WriteFile("s3fleet.yaml", []byte("region: from-cwd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := Defaults(), defaults(); !reflect.DeepEqual(got, want) {
		t.Errorf("Defaults() =\n%+v\nwant\n%+v", got, want)
	}
	if err := Defaults().Validate(); err != nil {
		t.Errorf("Defaults() does not validate: %v", err)
	}
}

func TestLoadEnv(t *testing.T) {
	tests := []struct {
		name string
		p    Program
		env  map[string]string
		want func(*Config)
	}{
		{"chunk size", Both, map[string]string{"S3FLEET_CHUNK_SIZE": "16MiB"}, func(c *Config) { c.ChunkSize = 16 * mib }},
		{"threshold in bytes", Both, map[string]string{"S3FLEET_THRESHOLD": "1048576"}, func(c *Config) { c.Threshold = mib }},
		{"path style", Both, map[string]string{"S3FLEET_PATH_STYLE": "true"}, func(c *Config) { c.PathStyle = true }},
		{"concurrency", Both, map[string]string{"S3FLEET_CONCURRENCY": "4"}, func(c *Config) { c.Concurrency = 4 }},
		{"redis", Both, map[string]string{"S3FLEET_REDIS": "rediss://:pw@redis.internal:6380/2"}, func(c *Config) {
			c.Redis = "rediss://:pw@redis.internal:6380/2"
		}},
		{"endpoint and region", Both, map[string]string{
			"S3FLEET_ENDPOINT": "http://127.0.0.1:7070", "S3FLEET_REGION": "eu-west-3",
		}, func(c *Config) { c.Endpoint, c.Region = "http://127.0.0.1:7070", "eu-west-3" }},
		{"durations", Both, map[string]string{
			"S3FLEET_RETRY_DELAY": "250ms", "S3FLEET_CHUNK_TIMEOUT": "2m", "S3FLEET_RETENTION": "24h",
		}, func(c *Config) {
			c.RetryDelay, c.ChunkTimeout, c.Retention = 250*time.Millisecond, 2*time.Minute, 24*time.Hour
		}},
		{"strings", Both, map[string]string{
			"S3FLEET_FLUSH": "none", "S3FLEET_LOG_LEVEL": "debug", "S3FLEET_LOG_FORMAT": "json",
		}, func(c *Config) { c.Flush, c.LogLevel, c.LogFormat = "none", "debug", "json" }},
		{"max retries zero", Both, map[string]string{"S3FLEET_MAX_RETRIES": "0"}, func(c *Config) { c.MaxRetries = 0 }},
		{"keep cache", Worker, map[string]string{"S3FLEET_KEEP_CACHE": "true"}, func(c *Config) { c.KeepCache = true }},
		{"direct io", Worker, map[string]string{"S3FLEET_DIRECT_IO": "off"}, func(c *Config) { c.DirectIO = "off" }},
		// The worker has no --chunk-size or --threshold; the environment
		// still reaches those keys.
		{"worker without size flags", Worker, map[string]string{
			"S3FLEET_CHUNK_SIZE": "4MiB", "S3FLEET_THRESHOLD": "0",
		}, func(c *Config) { c.ChunkSize, c.Threshold = 4*mib, 0 }},
		// And the enqueuer has no --concurrency.
		{"enqueuer without concurrency flag", Enqueuer, map[string]string{"S3FLEET_CONCURRENCY": "2"}, func(c *Config) {
			c.Concurrency = 2
		}},
		{"empty value is unset", Both, map[string]string{"S3FLEET_CONCURRENCY": ""}, func(*Config) {}},
		// Paths split on ':' like PATH; object URLs, which have a ':' of
		// their own, on commas or spaces.
		{"allow lists", Worker, map[string]string{
			"S3FLEET_ALLOW_DEST": "/data:/scratch", "S3FLEET_ALLOW_WRITE": "s3://output/,s3://archive/logs/",
			"S3FLEET_ALLOW_READ": "s3://input/ s3://raw-data/", "S3FLEET_ALLOW_DELETE": "s3://output/tmp/",
		}, func(c *Config) {
			c.AllowDest, c.AllowWrite = []string{"/data", "/scratch"}, []string{"s3://output/", "s3://archive/logs/"}
			c.AllowRead, c.AllowDelete = []string{"s3://input/", "s3://raw-data/"}, []string{"s3://output/tmp/"}
		}},
		{"unknown variable is ignored", Both, map[string]string{"S3FLEET_NO_SUCH_SETTING": "x"}, func(*Config) {}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			got, err := load(t, tc.p)
			if err != nil {
				t.Fatalf("Load with %v: %v", tc.env, err)
			}
			want := defaults()
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load with %v =\n%+v\nwant\n%+v", tc.env, got, want)
			}
		})
	}
}

func TestLoadEnvInvalid(t *testing.T) {
	tests := []struct {
		name, key, value string
		wantField        string
	}{
		{"zero chunk size", "S3FLEET_CHUNK_SIZE", "0", "chunk_size"},
		{"chunk size not a size", "S3FLEET_CHUNK_SIZE", "lots", "chunk_size"},
		{"zero concurrency", "S3FLEET_CONCURRENCY", "0", "concurrency"},
		{"negative concurrency", "S3FLEET_CONCURRENCY", "-3", "concurrency"},
		{"concurrency not a number", "S3FLEET_CONCURRENCY", "four", "concurrency"},
		{"path style not a bool", "S3FLEET_PATH_STYLE", "perhaps", "path_style"},
		{"duration without unit", "S3FLEET_RETRY_DELAY", "5", "retry_delay"},
		{"flush", "S3FLEET_FLUSH", "maybe", "flush"},
		{"direct io", "S3FLEET_DIRECT_IO", "yes", "direct_io"},
		{"redis scheme", "S3FLEET_REDIS", "http://x", "redis"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t)
			t.Setenv(tc.key, tc.value)
			got, err := load(t, Both)
			if err == nil {
				t.Fatalf("Load with %s=%q = %+v, want an error", tc.key, tc.value, got)
			}
			if !strings.Contains(err.Error(), tc.wantField) {
				t.Errorf("Load with %s=%q: error %q does not name %s", tc.key, tc.value, err, tc.wantField)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	isolate(t)
	tests := []struct {
		name, yaml string
		want       func(*Config)
	}{
		{"sizes and S3", "chunk_size: 4MiB\nendpoint: https://s3.example.com\nregion: eu-central-1\npath_style: true\n",
			func(c *Config) {
				c.ChunkSize, c.Endpoint, c.Region, c.PathStyle = 4*mib, "https://s3.example.com", "eu-central-1", true
			}},
		{"sizes as YAML numbers", "chunk_size: 1048576\nthreshold: 0\n", func(c *Config) { c.ChunkSize, c.Threshold = mib, 0 }},
		{"SI size", "threshold: 8M\n", func(c *Config) { c.Threshold = 8_000_000 }},
		{"worker settings", "concurrency: 3\nmax_retries: 0\nretry_delay: 100ms\nflush: none\nkeep_cache: true\nlog_format: json\n",
			func(c *Config) {
				c.Concurrency, c.MaxRetries, c.RetryDelay, c.Flush, c.KeepCache, c.LogFormat = 3, 0, 100*time.Millisecond, "none", true, "json"
			}},
		{"redis", "redis: redis-sentinel://sentinel:26379/0\n", func(c *Config) { c.Redis = "redis-sentinel://sentinel:26379/0" }},
		{"empty file", "", func(*Config) {}},
		{"comments only", "# nothing here\n", func(*Config) {}},
		{"unknown keys are ignored", "no_such_setting: 1\n", func(*Config) {}},
		{"remotes and allow lists", "remotes:\n  r2:\n    endpoint: https://acc.r2.example.com\n    region: auto\n    profile: r2\n" +
			"  minio:\n    endpoint: http://127.0.0.1:9000\n    path_style: true\n" +
			"allow_write: [\"r2://archive/logs/\"]\nallow_read: [\"s3://src/\", \"minio://b1b/\"]\n",
			func(c *Config) {
				c.Remotes = map[string]Remote{
					"r2":    {Endpoint: "https://acc.r2.example.com", Region: "auto", Profile: "r2"},
					"minio": {Endpoint: "http://127.0.0.1:9000", Region: "us-east-1", PathStyle: true}, // the top-level region
				}
				c.AllowWrite, c.AllowRead = []string{"r2://archive/logs/"}, []string{"s3://src/", "minio://b1b/"}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			file := writeFile(t, "s3fleet.yaml", tc.yaml)
			got, err := load(t, Both, "--config", file)
			if err != nil {
				t.Fatalf("Load --config with %q: %v", tc.yaml, err)
			}
			want := defaults()
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load --config with %q =\n%+v\nwant\n%+v", tc.yaml, got, want)
			}
		})
	}
}

func TestLoadRemotesInvalid(t *testing.T) {
	isolate(t)
	for yaml, want := range map[string]string{
		"remotes:\n  s3:\n    endpoint: http://x:1\n":                         "top-level endpoint's",
		"remotes:\n  r_2:\n    endpoint: http://x:1\n":                        `has the character '_'`,
		"remotes:\n  r2:\n    endpoint: ftp://x\n":                            "remotes.r2.endpoint",
		"allow_write: [\"dst://out/\"]\n":                                     `unknown remote "dst"`,
		"remotes:\n  r2:\n    region: auto\nallow_read: [\"r3://bucket/\"]\n": "the configured remotes are r2",
	} {
		_, err := load(t, Worker, "--config", writeFile(t, "s3fleet.yaml", yaml))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load with %q: %v, want an error containing %q", yaml, err, want)
		}
	}
}

func TestLoadFileInvalid(t *testing.T) {
	isolate(t)
	tests := []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"malformed YAML", "chunk_size: [4MiB\n", []string{"s3fleet.yaml"}},
		{"zero chunk size", "chunk_size: 0\n", []string{"chunk_size"}},
		{"bad size", "chunk_size: huge\n", []string{"chunk_size"}},
		{"bad flush and level", "flush: maybe\nlog_level: loud\n", []string{"flush", "log_level"}},
		{"bad endpoint", "endpoint: s3.example.com\n", []string{"endpoint"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			file := writeFile(t, "s3fleet.yaml", tc.yaml)
			got, err := load(t, Both, "--config", file)
			if err == nil {
				t.Fatalf("Load --config with %q = %+v, want an error", tc.yaml, got)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load --config with %q: error %q does not contain %q", tc.yaml, err, w)
				}
			}
		})
	}
}

// TestLoadPrecedence sets every layer at once: a flag beats the environment,
// which beats the file, which beats the default.
func TestLoadPrecedence(t *testing.T) {
	isolate(t)
	file := writeFile(t, "conf.yaml", strings.Join([]string{
		"region: file-region",
		"concurrency: 2",
		"chunk_size: 4MiB",
		"max_retries: 3",
		"endpoint: http://file:9000",
		"",
	}, "\n"))
	t.Setenv("S3FLEET_REGION", "env-region")
	t.Setenv("S3FLEET_CONCURRENCY", "4")
	t.Setenv("S3FLEET_CHUNK_SIZE", "2MiB")
	t.Setenv("S3FLEET_LOG_LEVEL", "warn")

	got, err := load(t, Both, "--config", file, "--region", "flag-region", "--concurrency=16", "--threshold", "1MiB")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := defaults()
	want.Region = "flag-region" // flag > env > file
	want.Concurrency = 16       // flag set to its default value still wins over env and file
	want.Threshold = mib        // flag > default
	want.ChunkSize = 2 * mib    // env > file
	want.LogLevel = "warn"      // env > default
	want.MaxRetries = 3         // file > default
	want.Endpoint = "http://file:9000"
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load() =\n%+v\nwant\n%+v", got, want)
	}
}

// TestLoadUnsetFlagsDoNotOverride checks that a declared but unset flag, whose
// own default equals the built-in one, leaves the file and the environment be.
func TestLoadUnsetFlagsDoNotOverride(t *testing.T) {
	isolate(t)
	file := writeFile(t, "conf.yaml", "path_style: true\nmax_retries: 1\n")
	t.Setenv("S3FLEET_CONCURRENCY", "5")
	got, err := load(t, Both, "--config", file, "--log-level", "error")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !got.PathStyle || got.MaxRetries != 1 || got.Concurrency != 5 || got.LogLevel != "error" {
		t.Errorf("Load() = %+v, want path_style and max_retries from the file, concurrency from env, log_level from the flag", got)
	}
}

func TestLoadSizes(t *testing.T) {
	isolate(t)
	tests := []struct {
		in   string
		want Size
	}{
		{"16MiB", 16 * mib},
		{"8M", 8_000_000},
		{"1048576", mib},
		{"1", 1},
		{"4KiB", 4 << 10},
		{"4kb", 4000},
		{"1GiB", 1 << 30},
		{"1.5MiB", 3 * mib / 2},
		{"16 MiB", 16 * mib},
		{" 2MiB ", 2 * mib},
		{"5TiB", 5 << 40},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			chunk := "32MiB" // chunks are at least 1 MiB: smaller sizes are parsed as thresholds
			want := int64(32 * mib)
			if tc.want >= MinChunkSize {
				chunk, want = tc.in, int64(tc.want)
			}
			for _, p := range []Program{Enqueuer, Both} {
				got, err := load(t, p, "--chunk-size", chunk, "--threshold", tc.in)
				if err != nil {
					t.Fatalf("Load --chunk-size %q --threshold %q: %v", chunk, tc.in, err)
				}
				if int64(got.ChunkSize) != want || got.Threshold != tc.want {
					t.Errorf("--chunk-size %q --threshold %q = %d/%d, want %d/%d", chunk, tc.in, got.ChunkSize, got.Threshold, want, tc.want)
				}
			}
		})
	}
}

func TestLoadSizesInvalid(t *testing.T) {
	isolate(t)
	tests := []struct {
		name, flag, value, wantField string
	}{
		{"zero chunk", "--chunk-size", "0", "chunk_size"},
		{"one-byte chunk", "--chunk-size", "1", "chunk_size"},
		{"chunk under 1MiB", "--chunk-size", "1023KiB", "chunk_size"},
		{"word", "--chunk-size", "lots", "chunk_size"},
		{"unknown unit", "--chunk-size", "3 parsecs", "chunk_size"},
		{"negative", "--chunk-size", "-1MiB", "chunk_size"},
		{"empty", "--chunk-size", "", "chunk_size"},
		{"threshold word", "--threshold", "big", "threshold"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := load(t, Enqueuer, tc.flag, tc.value)
			if err == nil {
				t.Fatalf("Load %s %q = %+v, want an error", tc.flag, tc.value, got)
			}
			if !strings.Contains(err.Error(), tc.wantField) {
				t.Errorf("Load %s %q: error %q does not name %s", tc.flag, tc.value, err, tc.wantField)
			}
		})
	}
}

func TestLoadConfigFileDiscovery(t *testing.T) {
	t.Run("missing --config file is an error", func(t *testing.T) {
		isolate(t)
		missing := filepath.Join(t.TempDir(), "nope.yaml")
		got, err := load(t, Both, "--config", missing)
		if err == nil {
			t.Fatalf("Load --config %s = %+v, want an error", missing, got)
		}
		if !strings.Contains(err.Error(), "nope.yaml") {
			t.Errorf("error %q does not name the file", err)
		}
	})
	t.Run("missing S3FLEET_CONFIG file is an error", func(t *testing.T) {
		isolate(t)
		missing := filepath.Join(t.TempDir(), "nope.yaml")
		t.Setenv("S3FLEET_CONFIG", missing)
		if got, err := load(t, Both); err == nil {
			t.Fatalf("Load with S3FLEET_CONFIG=%s = %+v, want an error", missing, got)
		}
	})
	t.Run("missing default s3fleet.yaml is fine", func(t *testing.T) {
		isolate(t) // an empty working directory
		got, err := load(t, Both)
		if err != nil {
			t.Fatalf("Load in an empty directory: %v", err)
		}
		if !reflect.DeepEqual(got, defaults()) {
			t.Errorf("Load() = %+v, want the defaults", got)
		}
	})
	t.Run("default s3fleet.yaml is read", func(t *testing.T) {
		isolate(t)
		if err := os.WriteFile("s3fleet.yaml", []byte("chunk_size: 4MiB\nregion: ap-south-1\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := load(t, Both)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if got.ChunkSize != 4*mib || got.Region != "ap-south-1" {
			t.Errorf("Load() = %+v, want chunk_size and region from ./s3fleet.yaml", got)
		}
	})
	t.Run("malformed default s3fleet.yaml is an error", func(t *testing.T) {
		isolate(t)
		if err := os.WriteFile("s3fleet.yaml", []byte("region: [unclosed\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := load(t, Both); err == nil {
			t.Fatalf("Load with a malformed ./s3fleet.yaml = %+v, want an error", got)
		}
	})
	t.Run("S3FLEET_CONFIG is read", func(t *testing.T) {
		isolate(t)
		t.Setenv("S3FLEET_CONFIG", writeFile(t, "env.yaml", "region: from-env-file\n"))
		got, err := load(t, Both)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if got.Region != "from-env-file" {
			t.Errorf("Region = %q, want it from the S3FLEET_CONFIG file", got.Region)
		}
	})
	t.Run("--config beats S3FLEET_CONFIG and ./s3fleet.yaml", func(t *testing.T) {
		isolate(t)
		if err := os.WriteFile("s3fleet.yaml", []byte("region: from-cwd\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("S3FLEET_CONFIG", writeFile(t, "env.yaml", "region: from-env-file\n"))
		got, err := load(t, Both, "--config", writeFile(t, "flag.yaml", "region: from-flag-file\n"))
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if got.Region != "from-flag-file" {
			t.Errorf("Region = %q, want it from the --config file", got.Region)
		}
	})
}

// TestLoadProgramFlags: each program declares only its own flags, and a key
// without a flag still loads.
func TestLoadProgramFlags(t *testing.T) {
	isolate(t)
	t.Run("worker", func(t *testing.T) {
		t.Parallel()
		got, err := load(t, Worker, "--concurrency=3", "--flush=none", "--read-timeout=5s")
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		want := defaults()
		want.Concurrency, want.Flush, want.ReadTimeout = 3, "none", 5*time.Second
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Load() =\n%+v\nwant\n%+v", got, want)
		}
	})
	t.Run("enqueuer", func(t *testing.T) {
		t.Parallel()
		got, err := load(t, Enqueuer, "--chunk-size=32MiB", "--path-style", "--endpoint=http://127.0.0.1:9000")
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		want := defaults()
		want.ChunkSize, want.PathStyle, want.Endpoint = 32*mib, true, "http://127.0.0.1:9000"
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Load() =\n%+v\nwant\n%+v", got, want)
		}
	})
}

func TestAddFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		p      Program
		has    []string
		hasNot []string
	}{
		{"enqueuer", Enqueuer,
			// concurrency: for enqueue --local
			[]string{"config", "redis", "endpoint", "region", "path-style", "chunk-size", "threshold", "max-retries", "log-level", "concurrency"},
			[]string{"flush", "retry-delay", "read-timeout", "shutdown-timeout", "chunk_size", "allow-dest", "ui", "sse-c-key"}},
		{"worker", Worker,
			[]string{"config", "redis", "concurrency", "flush", "retry-delay", "read-timeout", "shutdown-timeout", "log-format", "allow-dest", "ui", "bandwidth", "sse-c-key-file"},
			[]string{"chunk-size", "threshold"}},
		{"both", Both, append(flagNames(), "config"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := pflag.NewFlagSet(tc.name, pflag.ContinueOnError)
			AddFlags(fs, tc.p)
			for _, name := range tc.has {
				if fs.Lookup(name) == nil {
					t.Errorf("AddFlags(%s) lacks --%s", tc.name, name)
				}
			}
			for _, name := range tc.hasNot {
				if fs.Lookup(name) != nil {
					t.Errorf("AddFlags(%s) declares --%s", tc.name, name)
				}
			}
		})
	}
	t.Run("types", func(t *testing.T) {
		t.Parallel()
		fs := pflag.NewFlagSet("types", pflag.ContinueOnError)
		AddFlags(fs, Both)
		for name, want := range map[string]string{
			"path-style": "bool", "concurrency": "int", "max-retries": "int",
			"chunk-size": "string", "retry-delay": "string", "redis": "string", "allow-dest": "stringArray",
		} {
			if got := fs.Lookup(name).Value.Type(); got != want {
				t.Errorf("--%s has type %s, want %s", name, got, want)
			}
		}
		if got := fs.Lookup("chunk-size").DefValue; got != "32MiB" {
			t.Errorf("--chunk-size default %q, want 32MiB", got)
		}
	})
	t.Run("worker rejects --chunk-size", func(t *testing.T) {
		t.Parallel()
		fs := pflag.NewFlagSet("worker", pflag.ContinueOnError)
		fs.SetOutput(nopWriter{})
		AddFlags(fs, Worker)
		if err := fs.Parse([]string{"--chunk-size=1MiB"}); err == nil {
			t.Error("a worker flag set accepted --chunk-size")
		}
	})
}

func flagNames() []string {
	var names []string
	for _, s := range settings {
		names = append(names, flagName(s.key))
	}
	return names
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		mutate    func(*Config)
		wantField string // "" for a valid configuration
	}{
		{"defaults", func(*Config) {}, ""},
		{"rediss", func(c *Config) { c.Redis = "rediss://:pw@host:6380/1" }, ""},
		{"redis sentinel", func(c *Config) { c.Redis = "redis-sentinel://s1:26379,s2:26379/0" }, ""},
		{"http endpoint", func(c *Config) { c.Endpoint = "http://127.0.0.1:9000" }, ""},
		{"https endpoint", func(c *Config) { c.Endpoint = "https://s3.example.com" }, ""},
		{"zero threshold", func(c *Config) { c.Threshold = 0 }, ""},
		{"zero retries", func(c *Config) { c.MaxRetries = 0 }, ""},
		{"flush none", func(c *Config) { c.Flush = "none" }, ""},
		{"log level debug", func(c *Config) { c.LogLevel = "debug" }, ""},
		{"log level warn", func(c *Config) { c.LogLevel = "warn" }, ""},
		{"log level error", func(c *Config) { c.LogLevel = "error" }, ""},
		{"json logs", func(c *Config) { c.LogFormat = "json" }, ""},
		{"1 MiB chunks", func(c *Config) { c.ChunkSize = MinChunkSize }, ""},
		{"one byte chunks", func(c *Config) { c.ChunkSize = 1 }, "chunk_size"},

		{"empty redis", func(c *Config) { c.Redis = "" }, "redis"},
		{"http redis", func(c *Config) { c.Redis = "http://x" }, "redis"},
		{"redis without scheme", func(c *Config) { c.Redis = "127.0.0.1:6379" }, "redis"},
		{"unparseable redis", func(c *Config) { c.Redis = "redis://host:port/0" }, "redis"},
		{"endpoint without scheme", func(c *Config) { c.Endpoint = "s3.example.com" }, "endpoint"},
		{"endpoint without host", func(c *Config) { c.Endpoint = "http://" }, "endpoint"},
		{"ftp endpoint", func(c *Config) { c.Endpoint = "ftp://host" }, "endpoint"},
		{"zero chunk size", func(c *Config) { c.ChunkSize = 0 }, "chunk_size"},
		{"negative chunk size", func(c *Config) { c.ChunkSize = -1 }, "chunk_size"},
		{"negative threshold", func(c *Config) { c.Threshold = -1 }, "threshold"},
		{"zero concurrency", func(c *Config) { c.Concurrency = 0 }, "concurrency"},
		{"negative concurrency", func(c *Config) { c.Concurrency = -4 }, "concurrency"},
		{"negative retries", func(c *Config) { c.MaxRetries = -1 }, "max_retries"},
		{"zero retry delay", func(c *Config) { c.RetryDelay = 0 }, "retry_delay"},
		{"negative chunk timeout", func(c *Config) { c.ChunkTimeout = -time.Second }, "chunk_timeout"},
		{"zero connect timeout", func(c *Config) { c.ConnectTimeout = 0 }, "connect_timeout"},
		{"zero read timeout", func(c *Config) { c.ReadTimeout = 0 }, "read_timeout"},
		{"zero shutdown timeout", func(c *Config) { c.ShutdownTimeout = 0 }, "shutdown_timeout"},
		{"zero retention", func(c *Config) { c.Retention = 0 }, "retention"},
		{"flush maybe", func(c *Config) { c.Flush = "maybe" }, "flush"},
		{"flush upper case", func(c *Config) { c.Flush = "SYNC" }, "flush"},
		{"empty flush", func(c *Config) { c.Flush = "" }, "flush"},
		{"direct io upper case", func(c *Config) { c.DirectIO = "AUTO" }, "direct_io"},
		{"log level trace", func(c *Config) { c.LogLevel = "trace" }, "log_level"},
		{"log format xml", func(c *Config) { c.LogFormat = "xml" }, "log_format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := defaults()
			tc.mutate(&c)
			err := c.Validate()
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("Validate(%+v): %v", c, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want an error naming %s", c, tc.wantField)
			}
			if !strings.Contains(err.Error(), "config: "+tc.wantField+": ") {
				t.Errorf("Validate error %q does not name %s", err, tc.wantField)
			}
			if n := len(unwrapAll(err)); n != 1 {
				t.Errorf("Validate reported %d errors for one bad field: %q", n, err)
			}
		})
	}
}

func TestValidateReportsEveryError(t *testing.T) {
	t.Parallel()
	c := Config{ // the zero value is wrong almost everywhere
		Redis:       "http://:secret@x",
		Endpoint:    "nope",
		ChunkSize:   0,
		Threshold:   -1,
		Concurrency: -1,
		MaxRetries:  -1,
		Flush:       "maybe",
		LogLevel:    "loud",
		LogFormat:   "yaml",
	}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want errors")
	}
	fields := []string{
		"redis", "endpoint", "chunk_size", "threshold", "batch_objects", "batch_bytes", "concurrency", "max_retries",
		"retry_delay", "chunk_timeout", "connect_timeout", "read_timeout", "shutdown_timeout", "retention",
		"flush", "direct_io", "log_level", "log_format", "poll_interval",
	}
	for _, f := range fields {
		if !strings.Contains(err.Error(), "config: "+f+": ") {
			t.Errorf("Validate error does not report %s:\n%v", f, err)
		}
	}
	if n := len(unwrapAll(err)); n != len(fields) {
		t.Errorf("Validate reported %d errors, want %d:\n%v", n, len(fields), err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("Validate error reveals the Redis password:\n%v", err)
	}
}

// unwrapAll returns the errors joined in err, or err alone.
func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"password only", "redis://:secret@host:6379/0", "redis://:xxxxx@host:6379/0"},
		{"user and password", "rediss://user:secret@host:6380/1", "rediss://user:xxxxx@host:6380/1"},
		{"escaped password", "redis://:s%40cret@host/0", "redis://:xxxxx@host/0"},
		{"password with at sign", "redis://:sec@ret@host/0", "redis://:xxxxx@host/0"},
		{"no password", "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"user without password", "redis://user@host/0", "redis://user@host/0"},
		{"unparseable", "redis://:secret@host:port/0", "(unparseable URL)"},
		{"control character", "redis://:secret@host/0\n", "(unparseable URL)"},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := RedactURL(tc.in)
			if got != tc.want {
				t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if strings.Contains(got, "secret") || strings.Contains(got, "cret") {
				t.Errorf("RedactURL(%q) = %q reveals the password", tc.in, got)
			}
		})
	}
}

// TestRedactURLWithoutAuthority covers address-like strings that url.Parse
// accepts without a "//" authority, so URL.Redacted has no User to hide.
func TestRedactURLWithoutAuthority(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"default:secret@redis.internal:6379", "redis//:secret@host:6379/0"} {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			if got := RedactURL(in); strings.Contains(got, "secret") {
				t.Errorf("RedactURL(%q) = %q reveals the password", in, got)
			}
		})
	}
}

// TestValidateHidesRedisPassword: a rejected Redis URL is quoted in the
// error, never with its password.
func TestValidateHidesRedisPassword(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, redis string }{
		{"http scheme", "http://:secret@x"},
		{"http scheme with user", "http://admin:secret@x:6379/0"},
		{"typo in scheme", "rediss+tls://:secret@host:6380/0"},
		{"bad port", "redis://:secret@host:port/0"},
		{"space in host", "redis://:secret@ho st:6379/0"},
		{"missing scheme", "//:secret@host:6379"},
		// url.Parse reads these without an authority, so URL.Redacted has
		// no User to hide.
		{"no scheme, user and password", "default:secret@redis.internal:6379"},
		{"scheme missing its colon", "redis//:secret@host:6379/0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := defaults()
			c.Redis = tc.redis
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate accepted redis %q", tc.redis)
			}
			if !strings.Contains(err.Error(), "redis") {
				t.Errorf("Validate error %q does not name redis", err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("Validate error %q reveals the password", err)
			}
		})
	}
}

// TestLoadErrorHidesRedisPassword goes through Load, as a user would see it.
func TestLoadErrorHidesRedisPassword(t *testing.T) {
	isolate(t)
	t.Setenv("S3FLEET_REDIS", "http://:secret@x")
	_, err := load(t, Both)
	if err == nil {
		t.Fatal("Load accepted an http:// Redis URL")
	}
	if !strings.Contains(err.Error(), "redis") || strings.Contains(err.Error(), "secret") {
		t.Errorf("Load error %q: want it to name redis without the password", err)
	}
}

func TestSizeString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   Size
		want string
	}{
		{0, "0 B"},
		{1, "1 B"},
		{1023, "1023 B"},
		{8 * mib, "8.0 MiB"},
		{16 * mib, "16 MiB"},
		{1 << 30, "1.0 GiB"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			if got := tc.in.String(); got != tc.want {
				t.Errorf("Size(%d).String() = %q, want %q", int64(tc.in), got, tc.want)
			}
		})
	}
}

// TestAddFlagsMonitor: enqueue ui (Enqueuer|Monitor) takes the UI's
// settings and none of the worker's own.
func TestAddFlagsMonitor(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("ui", pflag.ContinueOnError)
	AddFlags(fs, Enqueuer|Monitor)
	for _, name := range []string{"redis", "ui", "ui-readonly", "log-level"} {
		if fs.Lookup(name) == nil {
			t.Errorf("AddFlags(Enqueuer|Monitor) lacks --%s", name)
		}
	}
	for _, name := range []string{"allow-dest", "health-addr", "flush", "shutdown-timeout"} {
		if fs.Lookup(name) != nil {
			t.Errorf("AddFlags(Enqueuer|Monitor) declares --%s", name)
		}
	}
}
