package cli

import (
	"os"
	"path/filepath"
)

// existingDir is the nearest directory at or above path that exists (an
// absolute path; "/" at worst).
func existingDir(path string) string {
	dir, err := filepath.Abs(path)
	if err != nil {
		return "/"
	}
	for {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}
