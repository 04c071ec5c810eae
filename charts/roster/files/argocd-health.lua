-- Argo CD health check for Roster's resources (roster.dev: ProvisioningPolicy, User, Group,
-- AccessGrant), in the form Argo CD's resource.customizations.health.<group>_<kind> expects: a
-- chunk over the global `obj` that returns `hs`. It reads the Ready condition the way kstatus
-- does: written for an older generation (status.observedGeneration, or the condition's own when
-- the status has none), or not yet written, is Progressing; True is Healthy;
-- False is Degraded, with Roster's reason and message (e.g. a User whose application refuses it,
-- a policy quarantined by its circuit breaker, an AccessGrant naming a role it may not bind).
local hs = {}
local generation = obj.metadata and obj.metadata.generation
local ready = nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    end
  end
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Roster to reconcile"
  return hs
end
local observed = obj.status.observedGeneration or ready.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for Roster to reconcile generation " .. tostring(generation)
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Degraded"
end
hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
return hs
