package location

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// FilePin is what an upload pins of a local file when it is listed: its
// inode, size, mtime and ctime (ns). Not its device: NFS numbers a mount's
// device per host, and every host of the fleet reads the same file. A file that no longer has the
// same pin has changed (or been replaced) and fails its object, never
// uploads as a mix of two versions.
type FilePin struct {
	Size  int64
	MTime time.Time
	Pin   string
}

func pinOf(st *unix.Stat_t) FilePin {
	mt := time.Unix(st.Mtim.Sec, st.Mtim.Nsec)
	return FilePin{Size: st.Size, MTime: mt,
		Pin: fmt.Sprintf("%d:%d:%d:%d", st.Ino, st.Size, st.Mtim.Nano(), st.Ctim.Nano())}
}

// PinPath pins the file at path (a symlink is pinned as itself: uploads
// do not follow them).
func PinPath(path string) (FilePin, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return FilePin{}, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	return pinOf(&st), nil
}

// PinFile pins an open file.
func PinFile(f *os.File) (FilePin, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return FilePin{}, &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	return pinOf(&st), nil
}
