// The pod sandbox's process (what registry.k8s.io/pause is elsewhere): PID 1 of every pod's
// sandbox on the test kubelet, holding the pod's namespaces. It waits for SIGTERM or SIGINT
// and reaps the zombies a shared PID namespace leaves to it. Built by config/images/build.py
// (no registry here, so containerd's sandbox image is built like every other image).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	children := make(chan os.Signal, 16)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			return
		case <-children:
			for {
				var status syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
