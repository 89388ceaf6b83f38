package location

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Exists says why a destination that is there already cannot be written:
// a directory stands there (another key has it as a prefix: a/b and a/b/c
// cannot both be files), or a file does and --overwrite was not given. A
// destination on S3 (a URL) only exists.
func Exists(dest string) string {
	if !IsURL(dest) {
		if fi, err := os.Lstat(dest); err == nil && fi.IsDir() {
			return fmt.Sprintf("destination %s is a directory: another key has %s/ as a prefix, and keys like a/b and a/b/c cannot both be files", dest, filepath.Base(dest))
		}
	}
	return fmt.Sprintf("destination %s already exists (use --overwrite to replace it)", dest)
}

// MkdirError explains a failure to make dest's directory: where a file
// stands in its way (keys like a/b and a/b/c cannot both be files), it
// names that file.
func MkdirError(dest string, err error) error {
	if !errors.Is(err, syscall.ENOTDIR) && !errors.Is(err, syscall.EEXIST) {
		return err
	}
	for d := filepath.Dir(dest); d != filepath.Dir(d); d = filepath.Dir(d) {
		if fi, serr := os.Lstat(d); serr == nil && !fi.IsDir() {
			return fmt.Errorf("%s is a file, so %s cannot be made under it: keys like a/b and a/b/c cannot both be files: %w", d, dest, err)
		}
	}
	return err
}
