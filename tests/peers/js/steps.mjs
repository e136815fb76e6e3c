// Drives the unmodified @bitrix24/b24jssdk against a portal for tests/peers/test_b24jssdk.py.
//
// Usage: B24_HOOK=<webhook url> node steps.mjs <step> < input.json
// Prints one JSON object on stdout. When the SDK reports failure, prints one line on stderr and exits 1.
// Secrets (the webhook URL in the environment, the OAuth tokens in the input) never go in argv, so they stay
// out of process listings.

import { B24Hook, B24OAuth, BatchRefV3 } from '@bitrix24/b24jssdk'

function fail(step, messages) {
  process.stderr.write(`b24jssdk ${step}: ${messages.join('; ')}\n`)
  process.exit(1)
}

async function readInput() {
  let text = ''
  for await (const chunk of process.stdin) {
    text += chunk
  }
  return text.trim() ? JSON.parse(text) : {}
}

// BatchV2.make with named commands and returnAjaxResult: one AjaxResult per name, and the errors of failed
// commands on the outer result too (…/3.batch-rest-api-ver2.md in the SDK repository, "Error Handling").
// Failed commands are reported, not fatal, so the test can check how the SDK surfaces them.
async function v2Batch(input) {
  const b24 = hook()
  const response = await b24.actions.v2.batch.make({
    calls: input.calls,
    options: { isHaltOnError: input.isHaltOnError, returnAjaxResult: true, requestId: 'peers-v2-batch' }
  })
  const commands = {}
  for (const [name, ajax] of Object.entries(response.getData() ?? {})) {
    commands[name] = ajax.isSuccess
      ? { result: ajax.getData().result, total: ajax.getTotal(), more: ajax.isMore() }
      : { errors: ajax.getErrorMessages() }
  }
  return { commands, errors: response.getErrorMessages() }
}

// BatchByChunkV2.make: splits the commands into batches of 50 and returns the results of the successful ones
// in command order (…/4.batch-by-chunk-rest-api-ver2.md).
async function v2BatchByChunk(input) {
  const b24 = hook()
  const calls = input.updates.map(({ id, fields }) => ['crm.deal.update', { id, fields }])
  const response = await b24.actions.v2.batchByChunk.make({
    calls,
    options: { isHaltOnError: true, requestId: 'peers-v2-batch-by-chunk' }
  })
  if (!response.isSuccess) {
    fail('v2-batch-by-chunk', response.getErrorMessages())
  }
  return { results: response.getData() }
}

// BatchV3.make with named commands: the name becomes the command's `as` alias, and the `$refArray` marker
// built by BatchRefV3 is passed through for the server to substitute (…/3.batch-rest-api-ver3.md).
async function v3BatchRef(input) {
  const b24 = hook()
  const response = await b24.actions.v3.batch.make({
    calls: {
      tasks: {
        method: 'tasks.task.list',
        params: { select: ['id', 'title'], filter: [['id', '<=', input.maxTaskId]], order: { id: 'ASC' } }
      },
      results: {
        method: 'tasks.task.result.list',
        params: {
          select: ['id', 'taskId', 'text', 'status'],
          filter: [['taskId', 'in', BatchRefV3.refArray('tasks.id')]],
          order: { id: 'ASC' },
          pagination: { limit: input.resultLimit }
        }
      }
    },
    options: { isHaltOnError: true, returnAjaxResult: true, requestId: 'peers-v3-batch-ref' }
  })
  if (!response.isSuccess) {
    fail('v3-batch-ref', response.getErrorMessages())
  }
  const out = {}
  for (const [name, ajax] of Object.entries(response.getData())) {
    out[name] = ajax.getData().result
  }
  return out
}

// B24OAuth (…/40.oauth.md): the access token travels in the body; on 401 `expired_token` the SDK posts the
// refresh token to `<serverEndpoint>/oauth/token/` and repeats the call. Tokens come on stdin and are never
// printed: only whether they changed.
async function oauthV2(input) {
  const app = input.app
  const b24 = new B24OAuth(
    {
      applicationToken: '',
      userId: app.userId,
      memberId: app.memberId,
      accessToken: app.accessToken,
      refreshToken: app.refreshToken,
      expires: app.expires,
      expiresIn: app.expiresIn,
      scope: app.scope,
      domain: app.domain,
      clientEndpoint: app.clientEndpoint,
      serverEndpoint: app.serverEndpoint,
      status: 'L'
    },
    { clientId: app.clientId, clientSecret: app.clientSecret }
  )
  let refreshes = 0
  let rotated = false
  b24.setCallbackRefreshAuth(async ({ authData }) => {
    refreshes += 1
    rotated = authData.access_token !== app.accessToken && authData.refresh_token !== app.refreshToken
  })
  try {
    const leads = []
    for (const id of input.leadIds) {
      const response = await b24.actions.v2.call.make({ method: 'crm.lead.get', params: { id } })
      if (!response.isSuccess) {
        fail('oauth-v2', response.getErrorMessages())
      }
      leads.push(response.getData().result)
    }
    return { leads, refreshes, rotated }
  } finally {
    b24.destroy()
  }
}

const STEPS = {
  'v2-batch': v2Batch,
  'v2-batch-by-chunk': v2BatchByChunk,
  'v3-batch-ref': v3BatchRef,
  'oauth-v2': oauthV2
}

const step = process.argv[2]
if (!(step in STEPS)) {
  fail(String(step), [`unknown step; expected one of ${Object.keys(STEPS).join(', ')}`])
}
let webhookClient
// The webhook client of the hook steps, made on first use so the OAuth step needs no webhook URL.
function hook() {
  webhookClient ??= B24Hook.fromWebhookUrl(process.env.B24_HOOK ?? '')
  return webhookClient
}

try {
  const out = await STEPS[step](await readInput())
  process.stdout.write(`${JSON.stringify(out)}\n`)
} catch (error) {
  // Thrown SdkError/AjaxError: report code and message on one line rather than a stack trace.
  fail(step, [`${error?.code ?? error?.name ?? 'Error'}: ${error?.message ?? error}`])
} finally {
  webhookClient?.destroy()
}
