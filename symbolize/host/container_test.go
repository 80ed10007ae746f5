package host

import (
	"testing"

	"github.com/kmemprof/kmemprof/tracer"
)

const (
	cid   = "3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081"
	cid2  = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e"
	short = "3f4e5a6b7c8d"
	uid   = "1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809"
	uidU  = "1b2c3d4e_5f60_4718_92a3_b4c5d6e7f809" // as the systemd driver spells it
	// A static pod's uid: the hash of its manifest.
	staticUID = "6c2b8b7e4f5f5a0d9a8e7f6d5c4b3a21"
)

func TestContainerID(t *testing.T) {
	for _, tt := range []struct {
		name, path  string
		runtime, id string
		pod         string
	}{
		// Docker.
		{name: "docker v1 cgroupfs", path: "/docker/" + cid, runtime: "docker", id: short},
		{name: "docker v2 systemd", path: "/system.slice/docker-" + cid + ".scope", runtime: "docker", id: short},
		{name: "docker systemd inside container", path: "/system.slice/docker-" + cid + ".scope/init.scope", runtime: "docker", id: short},
		{name: "docker rootless", path: "/user.slice/user-1000.slice/user@1000.service/app.slice/docker-" + cid + ".scope", runtime: "docker", id: short},
		{name: "docker in docker: innermost", path: "/docker/" + cid2 + "/docker/" + cid, runtime: "docker", id: short},
		{name: "dockerd itself", path: "/system.slice/docker.service"},
		{name: "removed cgroup", path: "/system.slice/docker-" + cid + ".scope (deleted)", runtime: "docker", id: short},

		// containerd / CRI.
		{
			name:    "kubernetes v2 systemd containerd",
			path:    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			runtime: "containerd", id: short, pod: uid,
		},
		{
			name:    "kubernetes v2 systemd besteffort",
			path:    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			runtime: "containerd", id: short, pod: uid,
		},
		{
			name:    "kubernetes v2 systemd guaranteed",
			path:    "/kubepods.slice/kubepods-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			runtime: "containerd", id: short, pod: uid,
		},
		{
			name:    "kubernetes v1 cgroupfs",
			path:    "/kubepods/burstable/pod" + uid + "/" + cid,
			runtime: "cri", id: short, pod: uid,
		},
		{
			name:    "kubernetes v1 cgroupfs guaranteed",
			path:    "/kubepods/pod" + uid + "/" + cid,
			runtime: "cri", id: short, pod: uid,
		},
		{
			name:    "kubernetes v1 systemd containerd",
			path:    "/system.slice/containerd.service/kubepods-burstable-pod" + uidU + ".slice:cri-containerd:" + cid,
			runtime: "containerd", id: short, pod: uid,
		},
		{
			name:    "kind node",
			path:    "/docker/" + cid2 + "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			runtime: "containerd", id: short, pod: uid,
		},
		{
			name:    "static pod",
			path:    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + staticUID + ".slice/cri-containerd-" + cid + ".scope",
			runtime: "containerd", id: short, pod: staticUID,
		},
		{
			name: "pod cgroup itself",
			path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice",
			pod:  uid,
		},
		{name: "qos slice", path: "/kubepods.slice/kubepods-burstable.slice"},
		{name: "nerdctl", path: "/system.slice/nerdctl-" + cid + ".scope", runtime: "containerd", id: short},

		// CRI-O.
		{
			name:    "cri-o v2",
			path:    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-" + cid + ".scope",
			runtime: "crio", id: short, pod: uid,
		},
		{
			name: "cri-o conmon is no container",
			path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-conmon-" + cid + ".scope",
			pod:  uid,
		},
		{
			name:    "cri-o v1 systemd",
			path:    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice:crio:" + cid,
			runtime: "crio", id: short, pod: uid,
		},

		// Podman.
		{name: "podman v2 systemd", path: "/machine.slice/libpod-" + cid + ".scope", runtime: "podman", id: short},
		{name: "podman container payload", path: "/machine.slice/libpod-" + cid + ".scope/container", runtime: "podman", id: short},
		{name: "podman cgroupfs", path: "/libpod_parent/libpod-" + cid, runtime: "podman", id: short},
		{name: "podman conmon is no container", path: "/machine.slice/libpod-conmon-" + cid + ".scope"},
		{name: "podman rootless", path: "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + cid + ".scope", runtime: "podman", id: short},

		// Not containers.
		{name: "root", path: "/"},
		{name: "empty", path: ""},
		{name: "systemd service", path: "/system.slice/sshd.service"},
		{name: "session", path: "/user.slice/user-1000.slice/session-2.scope"},
		{name: "cgroup id", path: "4242"},
		{name: "bare id, unknown parent", path: "/actions_job/" + cid},
		{name: "short hex", path: "/docker/" + short},
		{name: "uppercase hex", path: "/docker/3F4E5A6B7C8D9E0F1A2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F7081"},
		{name: "65 hex", path: "/docker/" + cid + "0"},
		{name: "prefix without id", path: "/system.slice/docker-.scope"},
		{name: "pod uid outside kubepods", path: "/pod" + uid},
		{name: "bad uid", path: "/kubepods/burstable/pod1b2c3d4e-5f60-4718-92a3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rt, id := ContainerID(tt.path)
			if rt != tt.runtime || id != tt.id {
				t.Errorf("ContainerID(%q) = %q, %q; want %q, %q", tt.path, rt, id, tt.runtime, tt.id)
			}
			if got := PodUID(tt.path); got != tt.pod {
				t.Errorf("PodUID(%q) = %q, want %q", tt.path, got, tt.pod)
			}
		})
	}
}

// TestContainerLabels checks the container and pod labels of a profile
// whose cgroups are a Kubernetes container, a Docker container and a
// service.
func TestContainerLabels(t *testing.T) {
	paths := map[uint64]string{
		1: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
		2: "/system.slice/docker-" + cid2 + ".scope",
		3: "/system.slice/sshd.service",
		4: "", // unresolved: labelled by id
	}
	snap := &tracer.Snapshot{Stacks: map[tracer.StackID][]uint64{1: {0xffffffff81000000}}}
	for id := range paths {
		snap.Records = append(snap.Records, tracer.Record{
			Key:        tracer.Key{Kind: tracer.KindSlab, Stack: 1, Cache: "kmalloc-64", CgroupID: id},
			BytesAlloc: 64 * id, // distinct values keep the sample order fixed
		})
	}
	agg, err := tracer.Aggregate(snap, nil, tracer.Options{CgroupPath: func(id uint64) string { return paths[id] }, Container: Container})
	if err != nil {
		t.Fatal(err)
	}
	p, err := agg.Profile()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{
		paths[1]: {"containerd:" + short, uid},
		paths[2]: {"docker:0b1c2d3e4f5a", ""},
		paths[3]: {"", ""},
		"4":      {"", ""},
	}
	if len(p.Sample) != len(want) {
		t.Fatalf("%d samples, want %d", len(p.Sample), len(want))
	}
	for _, s := range p.Sample {
		cg := s.Label[tracer.LabelCgroup]
		if len(cg) != 1 {
			t.Fatalf("sample labels %v: want one cgroup", s.Label)
		}
		w, ok := want[cg[0]]
		if !ok {
			t.Fatalf("unexpected cgroup label %q", cg[0])
		}
		if got := first(s.Label[tracer.LabelContainer]); got != w[0] {
			t.Errorf("cgroup %s: container label %q, want %q", cg[0], got, w[0])
		}
		if got := first(s.Label[tracer.LabelPod]); got != w[1] {
			t.Errorf("cgroup %s: pod label %q, want %q", cg[0], got, w[1])
		}
	}
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func BenchmarkContainerID(b *testing.B) {
	path := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope"
	for b.Loop() {
		ContainerID(path)
		PodUID(path)
	}
}
