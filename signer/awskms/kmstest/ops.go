package kmstest

import (
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// operations are the implemented KMS operations, by X-Amz-Target name.
// Each decodes its JSON input and returns its output (nil for an empty
// body) or an error.
var operations = map[string]func(s *Server, body []byte) (any, *apiError){
	// Using a key; Faults apply to these.
	"DescribeKey":  (*Server).describeKey,
	"GetPublicKey": (*Server).getPublicKey,
	"Sign":         (*Server).sign,
	"Verify":       (*Server).verify,

	// Managing keys.
	"CreateKey":           (*Server).createKey,
	"ListKeys":            (*Server).listKeys,
	"DisableKey":          (*Server).disableKey,
	"EnableKey":           (*Server).enableKey,
	"ScheduleKeyDeletion": (*Server).scheduleKeyDeletion,
	"CancelKeyDeletion":   (*Server).cancelKeyDeletion,
	"TagResource":         (*Server).tagResource,
	"UntagResource":       (*Server).untagResource,
	"ListResourceTags":    (*Server).listResourceTags,

	// Aliases.
	"CreateAlias": (*Server).createAlias,
	"UpdateAlias": (*Server).updateAlias,
	"DeleteAlias": (*Server).deleteAlias,
	"ListAliases": (*Server).listAliases,
}

// epoch is a timestamp on the wire: seconds since the epoch, a JSON number
// with millisecond precision.
type epoch time.Time

func (e epoch) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(time.Time(e).UnixMilli())/1000, 'f', -1, 64), nil
}

func decode(body []byte, v any) *apiError {
	if len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errorf(errSerialization, "%v", err)
	}
	return nil
}

type tag struct {
	TagKey   string `json:"TagKey"`
	TagValue string `json:"TagValue"`
}

func checkTags(tags []tag) *apiError {
	for _, t := range tags {
		if t.TagKey == "" || len(t.TagKey) > 128 || len(t.TagValue) > 256 {
			return errorf(errTag, "Invalid tag: keys must have 1 to 128 characters and values at most 256")
		}
	}
	return nil
}

type keyMetadata struct {
	AccountID             string   `json:"AWSAccountId"`
	Arn                   string   `json:"Arn"`
	CreationDate          epoch    `json:"CreationDate"`
	CustomerMasterKeySpec string   `json:"CustomerMasterKeySpec"`
	DeletionDate          *epoch   `json:"DeletionDate,omitempty"`
	Description           string   `json:"Description"`
	Enabled               bool     `json:"Enabled"`
	KeyID                 string   `json:"KeyId"`
	KeyManager            string   `json:"KeyManager"`
	KeySpec               string   `json:"KeySpec"`
	KeyState              string   `json:"KeyState"`
	KeyUsage              string   `json:"KeyUsage"`
	MultiRegion           bool     `json:"MultiRegion"`
	Origin                string   `json:"Origin"`
	PendingWindowInDays   int      `json:"PendingDeletionWindowInDays,omitempty"`
	SigningAlgorithms     []string `json:"SigningAlgorithms"`
}

// metadata describes k; s.mu must be held.
func (s *Server) metadata(k *key) keyMetadata {
	md := keyMetadata{
		AccountID:             s.account,
		Arn:                   k.arn,
		CreationDate:          epoch(k.created),
		CustomerMasterKeySpec: k.spec.name,
		Description:           k.description,
		Enabled:               k.state == stateEnabled,
		KeyID:                 k.id,
		KeyManager:            "CUSTOMER",
		KeySpec:               k.spec.name,
		KeyState:              k.state,
		KeyUsage:              "SIGN_VERIFY",
		Origin:                "AWS_KMS",
		SigningAlgorithms:     slices.Clone(k.spec.algs),
	}
	if k.state == statePendingDeletion {
		d := epoch(k.deletionDate)
		md.DeletionDate = &d
		md.PendingWindowInDays = k.pendingDays
	}
	return md
}

type keyMetadataOutput struct {
	KeyMetadata keyMetadata `json:"KeyMetadata"`
}

func (s *Server) createKey(body []byte) (any, *apiError) {
	var in struct {
		KeySpec               string
		CustomerMasterKeySpec string
		KeyUsage              string
		Description           string
		Tags                  []tag
		Origin                string
		MultiRegion           bool
		CustomKeyStoreID      string `json:"CustomKeyStoreId"`
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	specName := in.KeySpec
	if specName == "" {
		specName = in.CustomerMasterKeySpec
	}
	if specName == "" {
		specName = "SYMMETRIC_DEFAULT"
	}
	usage := in.KeyUsage
	if usage == "" {
		usage = "ENCRYPT_DECRYPT"
	}
	ks, ok := keySpecs[specName]
	switch {
	case !ok && slices.Contains(otherKeySpecs, specName):
		return nil, errorf(errUnsupported, "kmstest implements only these key specs: %v", KeySpecs())
	case !ok:
		return nil, errorf(errValidation, "1 validation error detected: Value '%s' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set", specName)
	}
	switch usage {
	case "SIGN_VERIFY":
	case "ENCRYPT_DECRYPT", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT", "ENCAPSULATE_DECAPSULATE":
		return nil, errorf(errUnsupported, "kmstest implements only KeyUsage SIGN_VERIFY, not %s", usage)
	default:
		return nil, errorf(errValidation, "1 validation error detected: Value '%s' at 'keyUsage' failed to satisfy constraint: Member must satisfy enum value set", usage)
	}
	if in.Origin != "" && in.Origin != "AWS_KMS" {
		return nil, errorf(errUnsupported, "kmstest implements only Origin AWS_KMS")
	}
	if in.MultiRegion || in.CustomKeyStoreID != "" {
		return nil, errorf(errUnsupported, "kmstest implements neither multi-Region keys nor custom key stores")
	}
	if len(in.Description) > 8192 {
		return nil, errorf(errValidation, "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192")
	}
	if err := checkTags(in.Tags); err != nil {
		return nil, err
	}
	priv, err := ks.gen()
	if err != nil {
		return nil, errorf(errInternal, "generating key: %v", err)
	}
	tags := map[string]string{}
	for _, t := range in.Tags {
		tags[t.TagKey] = t.TagValue
	}
	k, err := s.insertKey(ks, priv, in.Description, tags)
	if err != nil {
		return nil, errorf(errInternal, "%v", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return keyMetadataOutput{s.metadata(k)}, nil
}

type keyIDInput struct {
	KeyID string `json:"KeyId"`
}

func (s *Server) describeKey(body []byte) (any, *apiError) {
	var in keyIDInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, err := s.resolve(in.KeyID, true)
	if err != nil {
		return nil, err
	}
	return keyMetadataOutput{s.metadata(k)}, nil
}

func (s *Server) getPublicKey(body []byte) (any, *apiError) {
	var in keyIDInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, err := s.resolve(in.KeyID, true)
	if err != nil {
		return nil, err
	}
	if err := k.usable(); err != nil {
		return nil, err
	}
	return struct {
		KeyID                 string   `json:"KeyId"`
		PublicKey             []byte   `json:"PublicKey"`
		KeySpec               string   `json:"KeySpec"`
		CustomerMasterKeySpec string   `json:"CustomerMasterKeySpec"`
		KeyUsage              string   `json:"KeyUsage"`
		SigningAlgorithms     []string `json:"SigningAlgorithms"`
	}{k.arn, k.pubDER, k.spec.name, k.spec.name, "SIGN_VERIFY", slices.Clone(k.spec.algs)}, nil
}

type signatureInput struct {
	KeyID            string `json:"KeyId"`
	Message          []byte
	MessageType      string
	SigningAlgorithm string
	Signature        []byte
	DryRun           bool
}

// signingKey finds and checks the key for op, Sign or Verify; the returned
// key is safe to sign with after the lock is released.
func (s *Server) signingKey(op string, in *signatureInput) (*key, sigAlg, []byte, *apiError) {
	s.mu.RLock()
	k, err := s.resolve(in.KeyID, true)
	if deny := s.Faults().DenySign; err == nil && op == "Sign" && deny != "" && (deny == k.id || deny == k.arn) {
		err = errorf(errAccessDenied, "User: arn:aws:iam::%s:user/kmstest is not authorized to perform: kms:Sign on resource: %s because no identity-based policy allows the kms:Sign action (kmstest Faults.DenySign)", s.account, k.arn)
	}
	if err == nil {
		err = k.usable()
	}
	s.mu.RUnlock()
	if err != nil {
		return nil, sigAlg{}, nil, err
	}
	alg, data, err := k.prepare(in.SigningAlgorithm, in.MessageType, in.Message)
	if err != nil {
		return nil, sigAlg{}, nil, err
	}
	if in.DryRun {
		return nil, sigAlg{}, nil, errorf(errDryRun, "The request would have succeeded, but the DryRun option is set.")
	}
	return k, alg, data, nil
}

func (s *Server) sign(body []byte) (any, *apiError) {
	var in signatureInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	k, alg, data, aerr := s.signingKey("Sign", &in)
	if aerr != nil {
		return nil, aerr
	}
	sig, err := k.sign(alg, data)
	if err != nil {
		return nil, errorf(errInternal, "signing: %v", err)
	}
	return struct {
		KeyID            string `json:"KeyId"`
		Signature        []byte `json:"Signature"`
		SigningAlgorithm string `json:"SigningAlgorithm"`
	}{k.arn, sig, in.SigningAlgorithm}, nil
}

// maxSignature is the longest signature Verify accepts.
const maxSignature = 6144

func (s *Server) verify(body []byte) (any, *apiError) {
	var in signatureInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if len(in.Signature) == 0 || len(in.Signature) > maxSignature {
		return nil, errorf(errValidation, "1 validation error detected: Value at 'signature' failed to satisfy constraint: Member must have length between 1 and %d", maxSignature)
	}
	k, alg, data, aerr := s.signingKey("Verify", &in)
	if aerr != nil {
		return nil, aerr
	}
	if !k.verify(alg, data, in.Signature) {
		return nil, errorf(errInvalidSignature, "")
	}
	return struct {
		KeyID            string `json:"KeyId"`
		SignatureValid   bool   `json:"SignatureValid"`
		SigningAlgorithm string `json:"SigningAlgorithm"`
	}{k.arn, true, in.SigningAlgorithm}, nil
}

func (s *Server) listKeys(body []byte) (any, *apiError) {
	if err := decode(body, &struct{}{}); err != nil {
		return nil, err
	}
	type entry struct {
		KeyID  string `json:"KeyId"`
		KeyArn string `json:"KeyArn"`
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	out := struct {
		Keys      []entry `json:"Keys"`
		Truncated bool    `json:"Truncated"`
	}{Keys: []entry{}}
	for _, k := range s.keys {
		if !k.gone(now) {
			out.Keys = append(out.Keys, entry{k.id, k.arn})
		}
	}
	slices.SortFunc(out.Keys, func(a, b entry) int { return strings.Compare(a.KeyID, b.KeyID) })
	return out, nil
}

// manage runs change on the key a management operation names (a key ID or
// ARN; not an alias) under the write lock.
func (s *Server) manage(body []byte, in any, ref func() string, change func(k *key) *apiError) *apiError {
	if err := decode(body, in); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := s.resolve(ref(), false)
	if err != nil {
		return err
	}
	return change(k)
}

func (s *Server) disableKey(body []byte) (any, *apiError) {
	var in keyIDInput
	return nil, s.manage(body, &in, func() string { return in.KeyID }, func(k *key) *apiError {
		if k.state == statePendingDeletion {
			return errorf(errInvalidState, "%s is pending deletion.", k.arn)
		}
		k.state = stateDisabled
		return nil
	})
}

func (s *Server) enableKey(body []byte) (any, *apiError) {
	var in keyIDInput
	return nil, s.manage(body, &in, func() string { return in.KeyID }, func(k *key) *apiError {
		if k.state == statePendingDeletion {
			return errorf(errInvalidState, "%s is pending deletion.", k.arn)
		}
		k.state = stateEnabled
		return nil
	})
}

func (s *Server) scheduleKeyDeletion(body []byte) (any, *apiError) {
	var in struct {
		KeyID               string `json:"KeyId"`
		PendingWindowInDays int
	}
	type output struct {
		KeyID               string `json:"KeyId"`
		DeletionDate        epoch  `json:"DeletionDate"`
		KeyState            string `json:"KeyState"`
		PendingWindowInDays int    `json:"PendingWindowInDays"`
	}
	var out output
	err := s.manage(body, &in, func() string { return in.KeyID }, func(k *key) *apiError {
		days := in.PendingWindowInDays
		if days == 0 {
			days = 30
		}
		if days < 7 || days > 30 {
			return errorf(errValidation, "1 validation error detected: Value '%d' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between 7 and 30", days)
		}
		if k.state == statePendingDeletion {
			return errorf(errInvalidState, "%s is pending deletion.", k.arn)
		}
		k.state = statePendingDeletion
		k.pendingDays = days
		k.deletionDate = s.now().Add(time.Duration(days) * 24 * time.Hour)
		out = output{k.arn, epoch(k.deletionDate), k.state, days}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Server) cancelKeyDeletion(body []byte) (any, *apiError) {
	var in keyIDInput
	var arn string
	err := s.manage(body, &in, func() string { return in.KeyID }, func(k *key) *apiError {
		if k.state != statePendingDeletion {
			return errorf(errInvalidState, "%s is not pending deletion.", k.arn)
		}
		// As in AWS, a key whose deletion is cancelled is disabled.
		k.state = stateDisabled
		k.deletionDate = time.Time{}
		k.pendingDays = 0
		arn = k.arn
		return nil
	})
	if err != nil {
		return nil, err
	}
	return struct {
		KeyID string `json:"KeyId"`
	}{arn}, nil
}

func (s *Server) tagResource(body []byte) (any, *apiError) {
	var in struct {
		KeyID string `json:"KeyId"`
		Tags  []tag
	}
	return nil, s.manage(body, &in, func() string { return in.KeyID }, func(k *key) *apiError {
		if err := checkTags(in.Tags); err != nil {
			return err
		}
		if k.state == statePendingDeletion {
			return errorf(errInvalidState, "%s is pending deletion.", k.arn)
		}
		for _, t := range in.Tags {
			k.tags[t.TagKey] = t.TagValue
		}
		return nil
	})
}

func (s *Server) untagResource(body []byte) (any, *apiError) {
	var in struct {
		KeyID   string `json:"KeyId"`
		TagKeys []string
	}
	return nil, s.manage(body, &in, func() string { return in.KeyID }, func(k *key) *apiError {
		if k.state == statePendingDeletion {
			return errorf(errInvalidState, "%s is pending deletion.", k.arn)
		}
		for _, name := range in.TagKeys {
			delete(k.tags, name)
		}
		return nil
	})
}

func (s *Server) listResourceTags(body []byte) (any, *apiError) {
	var in keyIDInput
	out := struct {
		Tags      []tag `json:"Tags"`
		Truncated bool  `json:"Truncated"`
	}{Tags: []tag{}}
	err := s.manage(body, &in, func() string { return in.KeyID }, func(k *key) *apiError {
		for name, v := range k.tags {
			out.Tags = append(out.Tags, tag{name, v})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out.Tags, func(a, b tag) int { return strings.Compare(a.TagKey, b.TagKey) })
	return out, nil
}

var aliasName = regexp.MustCompile(`^alias/[a-zA-Z0-9/_-]{1,250}$`)

func checkAliasName(name string) *apiError {
	if !aliasName.MatchString(name) {
		return errorf(errValidation, "1 validation error detected: Value '%s' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$", name)
	}
	return nil
}

type aliasInput struct {
	AliasName   string
	TargetKeyID string `json:"TargetKeyId"`
}

// aliasTarget resolves an alias's target key; s.mu must be held.
func (s *Server) aliasTarget(ref string) (*key, *apiError) {
	k, err := s.resolve(ref, false)
	if err != nil {
		return nil, err
	}
	if k.state == statePendingDeletion {
		return nil, errorf(errInvalidState, "%s is pending deletion.", k.arn)
	}
	return k, nil
}

func (s *Server) createAlias(body []byte) (any, *apiError) {
	var in aliasInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if err := checkAliasName(in.AliasName); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := s.aliasTarget(in.TargetKeyID)
	if err != nil {
		return nil, err
	}
	if a := s.aliases[in.AliasName]; a != nil {
		if old := s.keys[a.keyID]; old != nil && !old.gone(s.now()) {
			return nil, errorf(errAlreadyExists, "An alias with the name %s already exists", s.arn(in.AliasName))
		}
	}
	now := s.now()
	s.aliases[in.AliasName] = &alias{name: in.AliasName, keyID: k.id, created: now, updated: now}
	return nil, nil
}

func (s *Server) updateAlias(body []byte) (any, *apiError) {
	var in aliasInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.aliases[in.AliasName]
	if a == nil {
		return nil, errorf(errNotFound, "Alias %s is not found.", s.arn(in.AliasName))
	}
	k, err := s.aliasTarget(in.TargetKeyID)
	if err != nil {
		return nil, err
	}
	a.keyID = k.id
	a.updated = s.now()
	return nil, nil
}

func (s *Server) deleteAlias(body []byte) (any, *apiError) {
	var in aliasInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aliases[in.AliasName] == nil {
		return nil, errorf(errNotFound, "Alias %s is not found.", s.arn(in.AliasName))
	}
	delete(s.aliases, in.AliasName)
	return nil, nil
}

func (s *Server) listAliases(body []byte) (any, *apiError) {
	var in keyIDInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	type entry struct {
		AliasName       string `json:"AliasName"`
		AliasArn        string `json:"AliasArn"`
		TargetKeyID     string `json:"TargetKeyId"`
		CreationDate    epoch  `json:"CreationDate"`
		LastUpdatedDate epoch  `json:"LastUpdatedDate"`
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var only *key
	if in.KeyID != "" {
		k, err := s.resolve(in.KeyID, false)
		if err != nil {
			return nil, err
		}
		only = k
	}
	now := s.now()
	out := struct {
		Aliases   []entry `json:"Aliases"`
		Truncated bool    `json:"Truncated"`
	}{Aliases: []entry{}}
	for _, a := range s.aliases {
		k := s.keys[a.keyID]
		if k == nil || k.gone(now) || (only != nil && k != only) {
			continue
		}
		out.Aliases = append(out.Aliases, entry{a.name, s.arn(a.name), a.keyID, epoch(a.created), epoch(a.updated)})
	}
	slices.SortFunc(out.Aliases, func(a, b entry) int { return strings.Compare(a.AliasName, b.AliasName) })
	return out, nil
}
