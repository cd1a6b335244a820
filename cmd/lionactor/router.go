package main

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/batch"
	"github.com/lionactor/lionactor/messages"
)

// A config file may describe a run over several deployments, besides any
// flag's setting by name:
//
//	deployments:
//	  - name: openai-a            # unique; results and metrics name it
//	    model: gpt-4o-mini        # the group it serves: what lines say in "model"
//	    provider: openai          # openai | anthropic | azure | openai-compatible | generic
//	    url: https://api.openai.com/v1
//	    upstream_model: gpt-4o-mini-2024-07-18
//	    api_key_env: OPENAI_KEY_A
//	    rpm: 5000
//	    tpm: 2000000
//	    concurrency: 64
//	    weight: 1
//	fallbacks:
//	  gpt-4o-mini: [claude-haiku]
//
// These names are the interface; an error names the setting as the file
// spells it (deployments[1].rpm).

// routerSettings are the config file's settings that are not flags.
var routerSettings = []string{"deployments", "fallbacks"}

// deploymentSettings are the settings of one deployment, by their name in
// the file, with the batch.Deployment field each sets (errors are named by
// it).
var deploymentSettings = map[string]string{
	"name":           "Name",
	"model":          "Group",
	"provider":       "Endpoint.Provider",
	"url":            "Endpoint.BaseURL",
	"endpoint":       "Endpoint.Path",
	"upstream_model": "Endpoint.Model",
	"api_key_env":    "Endpoint.APIKey",
	"deployment":     "Endpoint.Deployment",
	"api_version":    "Endpoint.APIVersion",
	"headers":        "Endpoint.Headers",
	"rpm":            "RPM",
	"tpm":            "TPM",
	"burst":          "Burst",
	"concurrency":    "Concurrency",
	"weight":         "Weight",
}

// soleEndpointFlags describe the one endpoint of a run without
// deployments; a run over deployments takes them from each deployment.
var soleEndpointFlags = []string{"provider", "url", "endpoint", "model", "api-key-env", "deployment", "api-version", "header", "rpm", "tpm"}

// routerFile is what readRouterFile found.
type routerFile struct {
	path        string
	deployments []batch.Deployment
	fallbacks   map[string][]string
}

// readRouterFile reads the deployments and fallbacks of the config file
// at path, with each deployment's key from the environment; nil when the
// file has none.
func readRouterFile(path string, getenv func(string) string) (*routerFile, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("reading config: %v", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, usagef("config %s: %v", path, err)
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, nil // applyConfigFile says what is wrong with it
	}
	rf := &routerFile{path: path}
	bad := func(n *yaml.Node, setting, format string, args ...any) error {
		return usagef("config %s: %s (line %d): %s", path, setting, n.Line, fmt.Sprintf(format, args...))
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		key, value := m.Content[i], m.Content[i+1]
		switch key.Value {
		case "deployments":
			if value.Kind != yaml.SequenceNode {
				return nil, bad(value, "deployments", "want a list of deployments")
			}
			for j, dn := range value.Content {
				d, err := readDeployment(dn, fmt.Sprintf("deployments[%d]", j), getenv, bad)
				if err != nil {
					return nil, err
				}
				rf.deployments = append(rf.deployments, d)
			}
		case "fallbacks":
			if err := value.Decode(&rf.fallbacks); err != nil {
				return nil, bad(value, "fallbacks", "want a model's fallbacks as a list of models, such as {gpt-4o-mini: [claude-haiku]}")
			}
		}
	}
	if rf.deployments == nil && rf.fallbacks == nil {
		return nil, nil
	}
	if len(rf.deployments) == 0 {
		return nil, usagef("config %s: fallbacks: there are no deployments to fall back among", path)
	}
	return rf, nil
}

// readDeployment reads one deployment of the file, named at in errors.
func readDeployment(n *yaml.Node, at string, getenv func(string) string, bad func(*yaml.Node, string, string, ...any) error) (batch.Deployment, error) {
	var d batch.Deployment
	if n.Kind != yaml.MappingNode {
		return d, bad(n, at, "want a mapping of settings (name, model, provider, url, rpm, ...)")
	}
	var (
		provider = string(imodel.OpenAI)
		keyEnv   string
		keyGiven bool
		headers  map[string]string
		setting  = map[string]*yaml.Node{}
	)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if _, known := deploymentSettings[k.Value]; !known {
			return d, bad(k, at, "unknown setting %q (known: %s)", k.Value, strings.Join(slices.Sorted(maps.Keys(deploymentSettings)), ", "))
		}
		setting[k.Value] = v
	}
	str := func(name string, into *string) error {
		if v := setting[name]; v != nil {
			if v.Kind != yaml.ScalarNode || v.Decode(into) != nil {
				return bad(v, at+"."+name, "want text")
			}
		}
		return nil
	}
	num := func(name string, into *int) error {
		if v := setting[name]; v != nil {
			if v.Kind != yaml.ScalarNode || v.Decode(into) != nil {
				return bad(v, at+"."+name, "want a whole number")
			}
		}
		return nil
	}
	ep := &d.Endpoint
	for _, err := range []error{
		str("name", &d.Name), str("model", &d.Group), str("provider", &provider), str("url", &ep.BaseURL),
		str("endpoint", &ep.Path), str("upstream_model", &ep.Model), str("deployment", &ep.Deployment), str("api_version", &ep.APIVersion),
		num("rpm", &d.RPM), num("tpm", &d.TPM), num("burst", &d.Burst), num("concurrency", &d.Concurrency), num("weight", &d.Weight),
	} {
		if err != nil {
			return d, err
		}
	}
	ep.Provider, ep.Name = imodel.Provider(provider), d.Name
	if v := setting["api_key_env"]; v != nil {
		if v.Kind != yaml.ScalarNode || v.Decode(&keyEnv) != nil {
			return d, bad(v, at+".api_key_env", "want the name of an environment variable, or '' for none")
		}
		keyGiven = true
	}
	if v := setting["headers"]; v != nil {
		var err error
		if headers, err = readHeaders(v); err != nil {
			return d, bad(v, at+".headers", "%v", err)
		}
		ep.Headers = headers
	}
	key, from, none := apiKey(ep.Provider, keyEnv, keyGiven, getenv)
	switch {
	case none:
		ep.Auth = imodel.AuthNone
	case from != "" && key == "":
		return d, usagef("%s.api_key_env: missing API key of deployment %q: set %s (or name another variable, or give api_key_env: '' for a server that takes none)", at, d.Name, from)
	}
	ep.APIKey = key
	return d, nil
}

// readHeaders reads a deployment's headers: a mapping of names to values,
// or a list of 'Name: value'. An error never shows a value, which may
// hold a credential.
func readHeaders(n *yaml.Node) (map[string]string, error) {
	var pairs [][2]string
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			pairs = append(pairs, [2]string{n.Content[i].Value, n.Content[i+1].Value})
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			name, value, ok := strings.Cut(item.Value, ":")
			if !ok {
				return nil, fmt.Errorf("header %d: want 'Name: value'", i+1)
			}
			pairs = append(pairs, [2]string{name, value})
		}
	default:
		return nil, errors.New("want a mapping of header names to values")
	}
	out := map[string]string{}
	for i, p := range pairs {
		name, value := strings.TrimSpace(p[0]), strings.TrimSpace(p[1])
		switch {
		case !validHeaderName(name):
			return nil, fmt.Errorf("header %d: the name must be a header name: letters, digits and - (no spaces)", i+1)
		case strings.ContainsFunc(value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }):
			return nil, fmt.Errorf("the value of %s contains a control character", name)
		}
		key := http.CanonicalHeaderKey(name)
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("%s is given twice", name)
		}
		out[key] = value
	}
	return out, nil
}

// apiKey reads the key of an endpoint of provider from the environment:
// from keyEnv when given, else from the provider's variable (OpenAI's for
// an OpenAI-compatible server, as OpenAI's SDKs read it whatever their
// base URL). keyEnv given as "" asks for no key (none); from is the
// variable read, "" when no key is wanted (generic by default).
func apiKey(p imodel.Provider, keyEnv string, given bool, getenv func(string) string) (key, from string, none bool) {
	if given && keyEnv == "" {
		return "", "", true
	}
	from = keyEnv
	switch {
	case from != "":
	case p == imodel.OpenAICompatible:
		from = imodel.OpenAI.DefaultKeyEnv()
	default:
		from = p.DefaultKeyEnv()
	}
	if from == "" {
		return "", "", false
	}
	return strings.TrimSpace(getenv(from)), from, false
}

// checkFlags checks the flags of a run over the deployments of rf: those
// of the sole endpoint have no place in it.
func (rf *routerFile) checkFlags(fl *pflag.FlagSet) error {
	for _, name := range soleEndpointFlags {
		if fl.Changed(name) {
			return usagef("--%s: a run over deployments (config %s) takes it from each deployment", name, rf.path)
		}
	}
	return nil
}

// deploymentFieldRE reads the place of a deployment setting in a batch
// config error: Deployments[2].Endpoint.BaseURL.
var deploymentFieldRE = regexp.MustCompile(`^Deployments\[(\d+)\]\.(.+)$`)

// naming returns err, if it is a *messages.ConfigError about a deployment
// or a fallback, as a usage error naming the setting as the config file
// spells it ("config router.yaml: deployments[2].url: ..."); any other
// error as it is.
func (rf *routerFile) naming(err error) error {
	var ce *messages.ConfigError
	if rf == nil || !errors.As(err, &ce) {
		return err
	}
	if m := deploymentFieldRE.FindStringSubmatch(ce.Field); m != nil {
		for name, field := range deploymentSettings {
			if field == m[2] {
				return usagef("config %s: deployments[%s].%s: %s", rf.path, m[1], name, ce.Reason)
			}
		}
		return usagef("config %s: deployments[%s]: %s: %s", rf.path, m[1], m[2], ce.Reason)
	}
	if g, ok := strings.CutPrefix(ce.Field, "Fallbacks."); ok {
		return usagef("config %s: fallbacks.%s: %s", rf.path, g, ce.Reason)
	}
	return err
}
