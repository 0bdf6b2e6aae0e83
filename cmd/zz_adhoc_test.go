package cmd

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestAdhocIO(t *testing.T) {
	r := requireBench(t)
	s := r.newStore("")
	s.lessor("read", "database/creds/group")
	for _, level := range []int{0, 100000} {
		if level > 0 {
			s.addLeases(level, at(time.Now().Add(24*time.Hour)), func(i int) string { return fmt.Sprintf("bench-%d", i) })
		}
		for k := 0; k < 3; k++ {
			c := exec.Command(s.rig.lessorBin(), "read", "-format=json", "database/creds/group")
			c.Env = s.env
			if err := c.Run(); err != nil {
				t.Fatal(err)
			}
			ru := c.ProcessState.SysUsage().(*syscall.Rusage)
			fmt.Printf("level %d: oublock %d (%d KiB) inblock %d\n", level, ru.Oublock, ru.Oublock/2, ru.Inblock)
		}
		out := "/work/slowio/strace-" + fmt.Sprint(level) + ".txt"
		c := exec.Command("strace", "-f", "-qq", "-T", "-e", "trace=pwrite64,fdatasync,fsync,mmap,munmap,openat,flock,pread64,ftruncate", "-o", out, s.rig.lessorBin(), "read", "-format=json", "database/creds/group")
		c.Env = s.env
		if b, err := c.CombinedOutput(); err != nil {
			t.Fatal(err, string(b))
		}
		raw, _ := os.ReadFile(out)
		var pw, n int
		for _, l := range strings.Split(string(raw), "\n") {
			if strings.Contains(l, "pwrite64(") {
				n++
				var fd, sz, off int
				i := strings.Index(l, "pwrite64(")
				fmt.Sscanf(l[i:], "pwrite64(%d,", &fd)
				j := strings.LastIndex(l, ", ")
				k := strings.LastIndex(l[:j], ", ")
				fmt.Sscanf(l[k+2:j], "%d", &sz)
				_ = off
				pw += sz
			}
		}
		fmt.Printf("level %d: %d pwrites, %d bytes\n", level, n, pw)
		if level > 0 {
			st, _ := os.Stat(s.storePath())
			fmt.Printf("store size %d\n", st.Size())
			b, _ := os.ReadFile(s.storePath())
			os.WriteFile("/work/slowio/store100k.db", b, 0o600)
		}
	}
}
