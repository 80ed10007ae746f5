package host

import "strings"

// Container runtimes named by ContainerID.
const (
	RuntimeDocker     = "docker"
	RuntimeContainerd = "containerd" // containerd's CRI plugin, nerdctl
	RuntimeCRIO       = "crio"
	RuntimePodman     = "podman"
	// RuntimeCRI is a Kubernetes container whose cgroup path does not name
	// the runtime (the kubelet's cgroupfs driver: /kubepods/burstable/pod.../<id>).
	RuntimeCRI = "cri"
)

// ShortIDLen is the length of the container ids ContainerID returns, as
// `docker ps` shows them.
const ShortIDLen = 12

// scopePrefixes are the prefixes of the cgroup (systemd scope, or cgroupfs
// directory) of a container under each runtime, followed by its 64-hex id.
// The runtimes' monitor processes ("crio-conmon-<id>.scope",
// "libpod-conmon-<id>.scope") are no containers, and do not match: what
// follows the prefix is not an id.
var scopePrefixes = [...]struct{ prefix, runtime string }{
	{"cri-containerd-", RuntimeContainerd},
	{"crio-", RuntimeCRIO},
	{"libpod-", RuntimePodman},
	{"docker-", RuntimeDocker},
	{"nerdctl-", RuntimeContainerd},
}

// v1SystemdRuntimes names the runtimes of the "<slice>:<prefix>:<id>"
// cgroup names the kubelet's systemd driver makes on cgroup v1.
var v1SystemdRuntimes = map[string]string{
	"cri-containerd": RuntimeContainerd,
	"crio":           RuntimeCRIO,
	"docker":         RuntimeDocker,
}

// ContainerID returns the container runtime and the short (ShortIDLen hex
// digits) container id of a cgroup path, v1 or v2, such as
// "/system.slice/docker-<64 hex>.scope" -> ("docker", "3f4e5a6b7c8d"). It
// recognises Docker ("/docker/<id>", "docker-<id>.scope"),
// containerd ("cri-containerd-<id>.scope", "nerdctl-<id>.scope"), CRI-O
// ("crio-<id>.scope"), Podman ("libpod-<id>.scope") and Kubernetes
// cgroupfs paths ("/kubepods/burstable/pod<uid>/<id>", runtime RuntimeCRI).
// The innermost container wins when containers nest. It returns two empty
// strings when the path is not a container's, which includes the runtimes'
// own monitor processes (crio-conmon-..., libpod-conmon-...). A trailing
// " (deleted)", as /proc/PID/cgroup shows for removed cgroups, is ignored.
func ContainerID(cgroupPath string) (runtime, id string) {
	comps := strings.Split(strings.TrimSuffix(cgroupPath, " (deleted)"), "/")
	for i := len(comps) - 1; i >= 0; i-- {
		if rt, full := containerOf(comps[i], comps[:i]); rt != "" {
			return rt, full[:ShortIDLen]
		}
	}
	return "", ""
}

// containerOf returns the runtime and full id of the container whose cgroup
// is named c, under the cgroups parents, or "" when c is no container's.
func containerOf(c string, parents []string) (runtime, id string) {
	// kubepods-burstable-pod<uid>.slice:cri-containerd:<id>
	if f := strings.Split(c, ":"); len(f) == 3 {
		if rt := v1SystemdRuntimes[f[1]]; rt != "" && isHexID(f[2]) {
			return rt, f[2]
		}
		return "", ""
	}
	c = strings.TrimSuffix(c, ".scope")
	for _, p := range scopePrefixes {
		if rest, ok := strings.CutPrefix(c, p.prefix); ok && isHexID(rest) {
			return p.runtime, rest
		}
	}
	if !isHexID(c) {
		return "", ""
	}
	// A bare id says nothing of the runtime: its parents do.
	if len(parents) > 0 && parents[len(parents)-1] == "docker" {
		return RuntimeDocker, c
	}
	if underKubepods(parents) {
		return RuntimeCRI, c
	}
	return "", ""
}

func underKubepods(parents []string) bool {
	for _, p := range parents {
		if strings.Contains(p, "kubepods") {
			return true
		}
	}
	return false
}

// isHexID reports whether s is a full container id: 64 lowercase hex digits.
func isHexID(s string) bool {
	return len(s) == 64 && isLowerHex(s)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// PodUID returns the uid of the Kubernetes pod whose cgroup holds
// cgroupPath, with dashes ("1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809"), or ""
// when the path is not under a pod. It reads the systemd driver's
// "kubepods-burstable-pod<uid with underscores>.slice" (v1 and v2, also
// under kind's "kubelet-kubepods-..." slices) and the cgroupfs driver's
// "/kubepods/burstable/pod<uid>". Static pods, whose uid is a 32-hex hash,
// keep it as it is.
func PodUID(cgroupPath string) string {
	comps := strings.Split(strings.TrimSuffix(cgroupPath, " (deleted)"), "/")
	for i := len(comps) - 1; i >= 0; i-- {
		c := comps[i]
		// kubepods-burstable-pod<uid>.slice:cri-containerd:<id>
		c, _, _ = strings.Cut(c, ":")
		var uid string
		switch {
		case strings.Contains(c, "kubepods") && strings.HasSuffix(c, ".slice"):
			j := strings.LastIndex(c, "-pod")
			if j < 0 {
				continue
			}
			uid = strings.ReplaceAll(strings.TrimSuffix(c[j+len("-pod"):], ".slice"), "_", "-")
		case strings.HasPrefix(c, "pod") && underKubepods(comps[:i]):
			uid = c[len("pod"):]
		default:
			continue
		}
		if isPodUID(uid) {
			return uid
		}
	}
	return ""
}

// isPodUID reports whether s is a pod uid: a UUID in its 8-4-4-4-12 form,
// or the 32 hex digits of a static pod's hash.
func isPodUID(s string) bool {
	if len(s) == 32 {
		return isLowerHex(s)
	}
	parts := strings.Split(s, "-")
	if len(parts) != 5 {
		return false
	}
	for i, n := range [...]int{8, 4, 4, 4, 12} {
		if len(parts[i]) != n || !isLowerHex(parts[i]) {
			return false
		}
	}
	return true
}

// Container is ContainerID and PodUID together, as tracer.Options.Container
// wants them: "runtime:id" and the pod uid of a cgroup path.
func Container(cgroupPath string) (container, pod string) {
	if rt, id := ContainerID(cgroupPath); id != "" {
		container = rt + ":" + id
	}
	return container, PodUID(cgroupPath)
}
