package main

// The request bodies dockerd decodes, modelled on moby's api/types (v28.x,
// which the proxy's field tables follow; v20.10's differences are noted).
// Field names, Go types and json tags are what matter: they decide which keys
// match, which values are type errors, and how repeated keys merge.

import "encoding/json"

// strSlice is moby's strslice.StrSlice: a JSON string or array of strings.
type strSlice []string

func (e *strSlice) UnmarshalJSON(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	p := make([]string, 0, 1)
	if err := json.Unmarshal(b, &p); err != nil {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		p = append(p, s)
	}
	*e = p
	return nil
}

type healthConfig struct {
	Test          []string `json:",omitempty"`
	Interval      int64    `json:",omitempty"`
	Timeout       int64    `json:",omitempty"`
	StartPeriod   int64    `json:",omitempty"`
	StartInterval int64    `json:",omitempty"`
	Retries       int      `json:",omitempty"`
}

type Config struct {
	Hostname        string
	Domainname      string
	User            string
	AttachStdin     bool
	AttachStdout    bool
	AttachStderr    bool
	ExposedPorts    map[string]struct{} `json:",omitempty"`
	Tty             bool
	OpenStdin       bool
	StdinOnce       bool
	Env             []string
	Cmd             strSlice
	Healthcheck     *healthConfig `json:",omitempty"`
	ArgsEscaped     bool          `json:",omitempty"`
	Image           string
	Volumes         map[string]struct{}
	WorkingDir      string
	Entrypoint      strSlice
	NetworkDisabled bool   `json:",omitempty"`
	MacAddress      string `json:",omitempty"`
	OnBuild         []string
	Labels          map[string]string
	StopSignal      string   `json:",omitempty"`
	StopTimeout     *int     `json:",omitempty"`
	Shell           strSlice `json:",omitempty"`
}

type weightDevice struct {
	Path   string
	Weight uint16
}

type throttleDevice struct {
	Path string
	Rate uint64
}

type deviceMapping struct {
	PathOnHost        string
	PathInContainer   string
	CgroupPermissions string
}

type deviceRequest struct {
	Driver       string
	Count        int
	DeviceIDs    []string
	Capabilities [][]string
	Options      map[string]string
}

type ulimit struct {
	Name string
	Hard int64
	Soft int64
}

type Resources struct {
	CPUShares            int64 `json:"CpuShares"`
	Memory               int64
	NanoCPUs             int64 `json:"NanoCpus"`
	CgroupParent         string
	BlkioWeight          uint16
	BlkioWeightDevice    []*weightDevice
	BlkioDeviceReadBps   []*throttleDevice
	BlkioDeviceWriteBps  []*throttleDevice
	BlkioDeviceReadIOps  []*throttleDevice
	BlkioDeviceWriteIOps []*throttleDevice
	CPUPeriod            int64 `json:"CpuPeriod"`
	CPUQuota             int64 `json:"CpuQuota"`
	CPURealtimePeriod    int64 `json:"CpuRealtimePeriod"`
	CPURealtimeRuntime   int64 `json:"CpuRealtimeRuntime"`
	CpusetCpus           string
	CpusetMems           string
	Devices              []deviceMapping
	DeviceCgroupRules    []string
	DeviceRequests       []deviceRequest
	KernelMemory         int64 `json:",omitempty"`
	KernelMemoryTCP      int64 `json:",omitempty"`
	MemoryReservation    int64
	MemorySwap           int64
	MemorySwappiness     *int64
	OomKillDisable       *bool
	PidsLimit            *int64
	Ulimits              []*ulimit
	CPUCount             int64 `json:"CpuCount"`
	CPUPercent           int64 `json:"CpuPercent"`
	IOMaximumIOps        uint64
	IOMaximumBandwidth   uint64
}

type logConfig struct {
	Type   string
	Config map[string]string
}

type restartPolicy struct {
	Name              string
	MaximumRetryCount int
}

type portBinding struct {
	HostIP   string `json:"HostIp"`
	HostPort string
}

type bindOptions struct {
	Propagation            string `json:",omitempty"`
	NonRecursive           bool   `json:",omitempty"`
	CreateMountpoint       bool   `json:",omitempty"`
	ReadOnlyNonRecursive   bool   `json:",omitempty"`
	ReadOnlyForceRecursive bool   `json:",omitempty"`
}

type driver struct {
	Name    string            `json:",omitempty"`
	Options map[string]string `json:",omitempty"`
}

type volumeOptions struct {
	NoCopy       bool              `json:",omitempty"`
	Labels       map[string]string `json:",omitempty"`
	Subpath      string            `json:",omitempty"`
	DriverConfig *driver           `json:",omitempty"`
}

type imageOptions struct {
	Subpath string `json:",omitempty"`
}

type tmpfsOptions struct {
	SizeBytes int64      `json:",omitempty"`
	Mode      uint32     `json:",omitempty"` // os.FileMode
	Options   [][]string `json:",omitempty"`
}

type clusterOptions struct{}

type mount struct {
	Type           string          `json:",omitempty"`
	Source         string          `json:",omitempty"`
	Target         string          `json:",omitempty"`
	ReadOnly       bool            `json:",omitempty"`
	Consistency    string          `json:",omitempty"`
	BindOptions    *bindOptions    `json:",omitempty"`
	VolumeOptions  *volumeOptions  `json:",omitempty"`
	ImageOptions   *imageOptions   `json:",omitempty"`
	TmpfsOptions   *tmpfsOptions   `json:",omitempty"`
	ClusterOptions *clusterOptions `json:",omitempty"`
}

type HostConfig struct {
	Binds           []string
	ContainerIDFile string
	LogConfig       logConfig
	NetworkMode     string
	PortBindings    map[string][]portBinding
	RestartPolicy   restartPolicy
	AutoRemove      bool
	VolumeDriver    string
	VolumesFrom     []string
	ConsoleSize     [2]uint
	Annotations     map[string]string `json:",omitempty"`
	CapAdd          strSlice
	CapDrop         strSlice
	CgroupnsMode    string
	DNS             []string `json:"Dns"`
	DNSOptions      []string `json:"DnsOptions"`
	DNSSearch       []string `json:"DnsSearch"`
	ExtraHosts      []string
	GroupAdd        []string
	IpcMode         string
	Cgroup          string
	Links           []string
	OomScoreAdj     int
	PidMode         string
	Privileged      bool
	PublishAllPorts bool
	ReadonlyRootfs  bool
	SecurityOpt     []string
	StorageOpt      map[string]string `json:",omitempty"`
	Tmpfs           map[string]string `json:",omitempty"`
	UTSMode         string
	UsernsMode      string
	ShmSize         int64
	Sysctls         map[string]string `json:",omitempty"`
	Runtime         string            `json:",omitempty"`
	Isolation       string
	Resources
	Mounts        []mount `json:",omitempty"`
	MaskedPaths   []string
	ReadonlyPaths []string
	Init          *bool `json:",omitempty"`
}

// Embedded pointers must be to exported types: encoding/json cannot allocate
// an embedded pointer to an unexported struct when decoding.

type endpointIPAMConfig struct {
	IPv4Address  string   `json:",omitempty"`
	IPv6Address  string   `json:",omitempty"`
	LinkLocalIPs []string `json:",omitempty"`
}

type endpointSettings struct {
	IPAMConfig          *endpointIPAMConfig
	Links               []string
	Aliases             []string
	MacAddress          string
	DriverOpts          map[string]string
	GwPriority          int
	NetworkID           string
	EndpointID          string
	Gateway             string
	IPAddress           string
	IPPrefixLen         int
	IPv6Gateway         string
	GlobalIPv6Address   string
	GlobalIPv6PrefixLen int
	DNSNames            []string
}

type networkingConfig struct {
	EndpointsConfig map[string]*endpointSettings
}

// createRequest is moby v28's container.CreateRequest (and the Windows
// ContainerConfigWrapper of every version).
type createRequest struct {
	*Config
	HostConfig       *HostConfig       `json:"HostConfig,omitempty"`
	NetworkingConfig *networkingConfig `json:"NetworkingConfig,omitempty"`
}

// wrapper2010 is dockerd 20.10's Linux runconfig.ContainerConfigWrapper (the
// daemon Debian bookworm ships): HostConfig's fields are also read from the
// top level of the body, through the deprecated embedded *HostConfig.
type wrapper2010 struct {
	*Config
	InnerHostConfig  *HostConfig       `json:"HostConfig,omitempty"`
	Cpuset           string            `json:",omitempty"`
	NetworkingConfig *networkingConfig `json:"NetworkingConfig,omitempty"`
	*HostConfig
}

// effectiveHostConfig is 20.10's getHostConfig: the top-level fields win
// outright when the body has no HostConfig key, else five of them fill gaps.
func (w *wrapper2010) effectiveHostConfig() *HostConfig {
	hc := w.HostConfig
	if hc == nil && w.InnerHostConfig != nil {
		hc = w.InnerHostConfig
	} else if w.InnerHostConfig != nil {
		inner := w.InnerHostConfig
		if hc.Memory != 0 && inner.Memory == 0 {
			inner.Memory = hc.Memory
		}
		if hc.MemorySwap != 0 && inner.MemorySwap == 0 {
			inner.MemorySwap = hc.MemorySwap
		}
		if hc.CPUShares != 0 && inner.CPUShares == 0 {
			inner.CPUShares = hc.CPUShares
		}
		if hc.CpusetCpus != "" && inner.CpusetCpus == "" {
			inner.CpusetCpus = hc.CpusetCpus
		}
		if hc.VolumeDriver != "" && inner.VolumeDriver == "" {
			inner.VolumeDriver = hc.VolumeDriver
		}
		hc = inner
	}
	if hc != nil && w.Cpuset != "" && hc.CpusetCpus == "" {
		hc.CpusetCpus = w.Cpuset
	}
	return hc
}

// execOptions is moby v28's container.ExecOptions (20.10's types.ExecConfig
// without ConsoleSize).
type execOptions struct {
	User         string
	Privileged   bool
	Tty          bool
	ConsoleSize  *[2]uint `json:",omitempty"`
	AttachStdin  bool
	AttachStderr bool
	AttachStdout bool
	DetachKeys   string
	Env          []string
	WorkingDir   string
	Cmd          []string
	Detach       bool
}
