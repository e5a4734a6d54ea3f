// Command strictload loads an Apptainer/SingularityCE file exactly as those
// programs do and prints what they would see, so that credbridge's tests can
// judge every file its store writes with the real Go YAML/JSON decoders.
//
//	strictload remote-yaml [-flavour apptainer|singularityce] FILE
//	strictload docker-config FILE
//
// Exit 0 and a JSON dump of the decoded structs on stdout; exit 1 and the
// decoder's error on stderr when the file would not load; exit 2 on misuse.
//
// Mirrored upstream code (read from the public repositories):
//
//   - apptainer/apptainer internal/pkg/remote/remote.go: Config{Active,
//     Remotes, Credentials}; ReadFrom: empty input is no error, otherwise
//     go.yaml.in/yaml/v4 (earlier gopkg.in/yaml.v3) NewDecoder + KnownFields(true)
//     in current releases, yaml.v2 UnmarshalStrict at commit 81f69f02 (1.0-1.x).
//   - sylabs/singularity internal/pkg/remote/remote.go: same Config and
//     ReadFrom; yaml.v3 + KnownFields(true) in v4 (commit 2febe967 and later),
//     yaml.v2 UnmarshalStrict at commit 7593a01e (3.x).
//   - endpoint.Config and ServiceConfig, internal/pkg/remote/endpoint/config.go:
//     apptainer commits 878c6c5b and 0c995859 have no Insecure field;
//     sylabs commits 1e61fde3 (3.x) and 01aee059 (v4) add `Insecure,omitempty`.
//   - credential.Config {URI, Auth,omitempty, Insecure}: apptainer
//     internal/pkg/remote/credential/config.go (b75ae474); SingularityCE
//     writes the same tags from credential/login_handler.go (0bb5ce16).
//   - docker-config: both programs call docker/cli cli/config.LoadFromReader
//     (credential/login_handler.go, sylabs credential/ociauth/ociauth.go),
//     i.e. docker/cli cli/config/configfile/file.go (0b4503c5)
//     ConfigFile.LoadFromReader: json.Decoder.Decode of the first value
//     (io.EOF tolerated), unknown keys ignored, typed known keys, then
//     decodeAuth of every auths[].auth (the strings.Cut version that also
//     rejects an empty user name) and types.AuthConfig (3d41bbac).
//
// Both YAML eras must accept a file credbridge writes, and see the same
// values in it: a user may run an old and a new release on the same HOME.
// Beyond the decoders, nulls that decode to nil pointers/maps are refused,
// because the programs dereference them unchecked (see checkNils). Error
// texts are upstream's, prefixed with the YAML era or suffixed with the
// auths key that failed.
// Debian ships yaml.v3 3.0.1; go.yaml.in/yaml/v4 is its continuation with
// the same decoding rules for this schema.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	yamlv2 "gopkg.in/yaml.v2"
	yamlv3 "gopkg.in/yaml.v3"
)

// credentialConfig mirrors credential.Config.
type credentialConfig struct {
	URI      string `yaml:"URI" json:"URI"`
	Auth     string `yaml:"Auth,omitempty" json:"Auth"`
	Insecure bool   `yaml:"Insecure" json:"Insecure"`
}

// serviceConfig mirrors endpoint.ServiceConfig (a keyserver).
type serviceConfig struct {
	URI      string `yaml:"URI" json:"URI"`
	Skip     bool   `yaml:"Skip" json:"Skip"`
	External bool   `yaml:"External" json:"External"`
	Insecure bool   `yaml:"Insecure" json:"Insecure"`
}

// apptainerEndpoint mirrors Apptainer's endpoint.Config: no Insecure key.
type apptainerEndpoint struct {
	URI        string           `yaml:"URI,omitempty" json:"URI"`
	Token      string           `yaml:"Token,omitempty" json:"Token"`
	System     bool             `yaml:"System" json:"System"`
	Exclusive  bool             `yaml:"Exclusive" json:"Exclusive"`
	Keyservers []*serviceConfig `yaml:"Keyservers,omitempty" json:"Keyservers"`
}

// singularityEndpoint mirrors SingularityCE's endpoint.Config.
type singularityEndpoint struct {
	URI        string           `yaml:"URI,omitempty" json:"URI"`
	Token      string           `yaml:"Token,omitempty" json:"Token"`
	System     bool             `yaml:"System" json:"System"`
	Exclusive  bool             `yaml:"Exclusive" json:"Exclusive"`
	Insecure   bool             `yaml:"Insecure,omitempty" json:"Insecure"`
	Keyservers []*serviceConfig `yaml:"Keyservers,omitempty" json:"Keyservers"`
}

// remoteConfig mirrors remote.Config; E is the flavour's endpoint.Config.
type remoteConfig[E any] struct {
	DefaultRemote string              `yaml:"Active" json:"Active"`
	Remotes       map[string]*E       `yaml:"Remotes" json:"Remotes"`
	Credentials   []*credentialConfig `yaml:"Credentials,omitempty" json:"Credentials"`
}

// readFrom is remote.ReadFrom for one YAML era, error text included.
func readFrom[E any](b []byte, era string) (*remoteConfig[E], error) {
	c := &remoteConfig[E]{Remotes: make(map[string]*E)}
	if len(b) == 0 {
		return c, nil
	}
	var err error
	if era == "yaml.v3" {
		dec := yamlv3.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		err = dec.Decode(c)
	} else {
		err = yamlv2.UnmarshalStrict(b, c)
	}
	if err != nil {
		return nil, fmt.Errorf("%s era: failed to decode YAML data from io.Reader: %s", era, err)
	}
	return c, nil
}

// keyservers returns an endpoint's Keyservers whatever its flavour.
func keyservers(e any) []*serviceConfig {
	switch v := e.(type) {
	case *apptainerEndpoint:
		return v.Keyservers
	case *singularityEndpoint:
		return v.Keyservers
	}
	panic(fmt.Sprintf("unknown endpoint type %T", e))
}

// checkNils rejects the nulls the decoders accept but the programs then
// dereference without a check (GetRemote, Login, SameURI, kc.External) or
// write into (Add, Rename on a nil Remotes map): they would panic.
func checkNils[E any](c *remoteConfig[E]) error {
	if c.Remotes == nil {
		return errors.New("Remotes is null: Add/Rename would write to a nil map and panic")
	}
	for name, e := range c.Remotes {
		if e == nil {
			return fmt.Errorf("remote %q is null: GetRemote would dereference a nil *endpoint.Config and panic", name)
		}
		for i, ks := range keyservers(e) {
			if ks == nil {
				return fmt.Errorf("remote %q Keyservers[%d] is null: login would dereference it and panic", name, i)
			}
		}
	}
	for i, cred := range c.Credentials {
		if cred == nil {
			return fmt.Errorf("Credentials[%d] is null: login/logout would dereference it and panic", i)
		}
	}
	return nil
}

// loadRemote decodes with both YAML eras and demands the same result.
func loadRemote[E any](b []byte) (any, error) {
	v3, err := readFrom[E](b, "yaml.v3")
	if err != nil {
		return nil, err
	}
	v2, err := readFrom[E](b, "yaml.v2")
	if err != nil {
		return nil, err
	}
	if err := checkNils(v3); err != nil {
		return nil, err
	}
	if err := checkNils(v2); err != nil {
		return nil, err
	}
	if !reflect.DeepEqual(v2, v3) {
		return nil, errors.New("yaml.v2 and yaml.v3 eras decode different values from this file")
	}
	return v3, nil
}

// authConfig mirrors docker/cli types.AuthConfig.
type authConfig struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	Email         string `json:"email,omitempty"`
	ServerAddress string `json:"serveraddress,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

// proxyConfig mirrors docker/cli configfile.ProxyConfig.
type proxyConfig struct {
	HTTPProxy  string `json:"httpProxy,omitempty"`
	HTTPSProxy string `json:"httpsProxy,omitempty"`
	NoProxy    string `json:"noProxy,omitempty"`
	FTPProxy   string `json:"ftpProxy,omitempty"`
	AllProxy   string `json:"allProxy,omitempty"`
}

// configFile mirrors docker/cli configfile.ConfigFile: every known key is
// typed, so a known key of the wrong type fails the whole file.
type configFile struct {
	AuthConfigs          map[string]authConfig        `json:"auths"`
	HTTPHeaders          map[string]string            `json:"HttpHeaders,omitempty"`
	PsFormat             string                       `json:"psFormat,omitempty"`
	ImagesFormat         string                       `json:"imagesFormat,omitempty"`
	NetworksFormat       string                       `json:"networksFormat,omitempty"`
	PluginsFormat        string                       `json:"pluginsFormat,omitempty"`
	VolumesFormat        string                       `json:"volumesFormat,omitempty"`
	StatsFormat          string                       `json:"statsFormat,omitempty"`
	DetachKeys           string                       `json:"detachKeys,omitempty"`
	CredentialsStore     string                       `json:"credsStore,omitempty"`
	CredentialHelpers    map[string]string            `json:"credHelpers,omitempty"`
	ServiceInspectFormat string                       `json:"serviceInspectFormat,omitempty"`
	ServicesFormat       string                       `json:"servicesFormat,omitempty"`
	TasksFormat          string                       `json:"tasksFormat,omitempty"`
	SecretFormat         string                       `json:"secretFormat,omitempty"`
	ConfigFormat         string                       `json:"configFormat,omitempty"`
	NodesFormat          string                       `json:"nodesFormat,omitempty"`
	PruneFilters         []string                     `json:"pruneFilters,omitempty"`
	Proxies              map[string]proxyConfig       `json:"proxies,omitempty"`
	CurrentContext       string                       `json:"currentContext,omitempty"`
	CLIPluginsExtraDirs  []string                     `json:"cliPluginsExtraDirs,omitempty"`
	Plugins              map[string]map[string]string `json:"plugins,omitempty"`
	Aliases              map[string]string            `json:"aliases,omitempty"`
	Features             map[string]string            `json:"features,omitempty"`
	Experimental         string                       `json:"experimental,omitempty"`
}

// decodeAuth is docker/cli configfile.decodeAuth.
func decodeAuth(authStr string) (string, string, error) {
	if authStr == "" {
		return "", "", nil
	}
	decLen := base64.StdEncoding.DecodedLen(len(authStr))
	decoded := make([]byte, decLen)
	n, err := base64.StdEncoding.Decode(decoded, []byte(authStr))
	if err != nil {
		return "", "", err
	}
	if n > decLen {
		return "", "", errors.New("Something went wrong decoding auth config")
	}
	userName, password, ok := strings.Cut(string(decoded), ":")
	if !ok || userName == "" {
		return "", "", errors.New("Invalid auth configuration file")
	}
	return userName, strings.Trim(password, "\x00"), nil
}

// loadDockerConfig is docker/cli config.LoadFromReader.
func loadDockerConfig(r io.Reader) (*configFile, error) {
	cf := &configFile{AuthConfigs: make(map[string]authConfig)}
	if err := json.NewDecoder(r).Decode(cf); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	for addr, ac := range cf.AuthConfigs {
		if ac.Auth != "" {
			var err error
			ac.Username, ac.Password, err = decodeAuth(ac.Auth)
			if err != nil {
				return nil, fmt.Errorf("%w (auths[%q])", err, addr)
			}
		}
		ac.Auth = ""
		ac.ServerAddress = addr
		cf.AuthConfigs[addr] = ac
	}
	return cf, nil
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: strictload remote-yaml [-flavour apptainer|singularityce] FILE")
	fmt.Fprintln(os.Stderr, "       strictload docker-config FILE")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	flags := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	var flavour *string
	if os.Args[1] == "remote-yaml" {
		flavour = flags.String("flavour", "apptainer", "apptainer or singularityce")
	}
	flags.Parse(os.Args[2:])
	if flags.NArg() != 1 {
		usage()
	}
	f, err := os.Open(flags.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()

	var out any
	switch os.Args[1] {
	case "remote-yaml":
		b, readErr := io.ReadAll(f)
		if readErr != nil {
			fmt.Fprintf(os.Stderr, "failed to read from io.Reader: %s\n", readErr)
			os.Exit(1)
		}
		switch *flavour {
		case "apptainer":
			out, err = loadRemote[apptainerEndpoint](b)
		case "singularityce":
			out, err = loadRemote[singularityEndpoint](b)
		default:
			usage()
		}
	case "docker-config":
		out, err = loadDockerConfig(f)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
