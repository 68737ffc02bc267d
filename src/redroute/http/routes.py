"""The route table: each operation's method, path, operation id, summary,
tag, schemas, success statuses and handler, in one list.

app.py serves it; openapi.py documents it. Endpoints whose shape is not a
request-response (SSE, health, metrics, the document itself) live in app.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pydantic

from ..model import ID_PATTERN
from . import handlers as h
from . import schemas as s
from .handlers import IDEMPOTENCY_KEY, Handler


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    op_id: str
    summary: str
    tag: str
    fn: Handler
    body: type[pydantic.BaseModel] | None = None
    response: type[pydantic.BaseModel] | None = None  # None: no content (204)
    statuses: tuple[int, ...] = (200,)
    errors: tuple[int, ...] = (404, 422)
    headers: tuple[dict[str, Any], ...] = ()  # request headers it reads (OpenAPI parameters)
    query: type[pydantic.BaseModel] | None = None  # its query parameters


def route(method: str, path: str, op_id: str, summary: str, tag: str, fn: Handler, *,
          body: type[pydantic.BaseModel] | None = None,
          response: type[pydantic.BaseModel] | None = None,
          statuses: tuple[int, ...] = (200,),
          errors: tuple[int, ...] = (404, 422),
          headers: tuple[dict[str, Any], ...] = (),
          query: type[pydantic.BaseModel] | None = None) -> Operation:
    """An operation with the errors every request of its shape can meet."""
    errs = set(errors) | {503}
    if body is not None:
        errs |= {400, 413, 415, 422}
    if "{" in path or query is not None:
        errs |= {422}
    return Operation(method, path, op_id, summary, tag, fn, body, response, statuses,
                     tuple(sorted(errs)), headers, query)


IDEMPOTENCY_PARAM = {
    "name": IDEMPOTENCY_KEY, "in": "header", "required": False,
    "description": "makes the request safe to retry: a repeat with the same key within the "
                   "retention period creates nothing and answers 200 with the first request's "
                   "task as it is now (422 if the key was used for another queue or conversation)",
    "schema": {"type": "string", "pattern": ID_PATTERN.pattern, "maxLength": 128},
}

# ?limit= and ?cursor= of a list (OpenAPI parameters).
PAGE_PARAMS = (
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
    {"name": "cursor", "in": "query", "required": False,
     "description": "the `next` of the previous page",
     "schema": {"type": "string", "maxLength": 256, "pattern": r"^[A-Za-z0-9_.@+|\-]+$"}},
)

ROUTES: list[Operation] = [
    # Configuration
    route("PUT", "/v1/mrds/{mrdId}", "putMrd", "Create or replace an MRD", "config",
          h.put_mrd, body=s.MrdBody, response=s.Mrd),
    route("GET", "/v1/mrds/{mrdId}", "getMrd", "Read an MRD", "config",
          h.get_mrd, response=s.Mrd),
    route("PUT", "/v1/queues/{queueId}", "putQueue", "Create or replace a queue", "config",
          h.put_queue, body=s.QueueBody, response=s.Queue, errors=(404, 409, 422)),
    route("GET", "/v1/queues/{queueId}", "getQueue",
          "Read a queue with its live statistics (waiting, oldestWaitMs, agents)", "config",
          h.get_queue, response=s.Queue),
    route("GET", "/v1/queues/{queueId}/statistics", "getQueueStatistics",
          "A queue's statistics: what it holds now, and what was counted over the last "
          "windowMinutes (service level, waits, handle times)", "statistics",
          h.queue_statistics, response=s.QueueStatistics, query=s.StatisticsQuery),
    route("GET", "/v1/statistics", "getStatistics",
          "Every queue's statistics, and the tenant's agents by state", "statistics",
          h.statistics, response=s.TenantStatistics, errors=(422,), query=s.StatisticsQuery),
    route("PUT", "/v1/agents/{agentId}", "putAgent", "Create or replace an agent", "config",
          h.put_agent, body=s.AgentBody, response=s.Agent),
    route("GET", "/v1/agents/{agentId}", "getAgent", "Read an agent with its MRD states",
          "agents", h.get_agent, response=s.Agent),
    # Configuration lists (pages in id order) and deletion
    route("GET", "/v1/mrds", "listMrds", "The MRDs, a page in id order", "config",
          h.list_mrds, response=s.MrdList, errors=(422,), query=s.ListQuery),
    route("GET", "/v1/queues", "listQueues",
          "The queues with their live statistics, a page in id order", "config",
          h.list_queues, response=s.QueueList, errors=(422,), query=s.ListQuery),
    route("GET", "/v1/agents", "listAgents", "The agents with their MRD states, a page in id order",
          "config", h.list_agents, response=s.AgentList, errors=(422,), query=s.ListQuery),
    route("DELETE", "/v1/mrds/{mrdId}", "deleteMrd",
          "Delete an MRD no queue uses and no agent holds tasks on", "config",
          h.delete_mrd, statuses=(204,), errors=(404, 409, 422)),
    route("DELETE", "/v1/queues/{queueId}", "deleteQueue",
          "Delete a queue no agent lists, with no waiting or reserved task", "config",
          h.delete_queue, statuses=(204,), errors=(404, 409, 422)),
    route("DELETE", "/v1/agents/{agentId}", "deleteAgent",
          "Delete an agent that holds no task (it is logged out first)", "config",
          h.delete_agent, statuses=(204,), errors=(404, 409, 422)),
    # Agents
    route("POST", "/v1/agents/{agentId}/state", "setAgentState",
          "Set an agent's global state, or one MRD's state", "agents",
          h.set_agent_state, body=s.AgentStateBody, response=s.Agent, errors=(404, 409, 422)),
    route("GET", "/v1/agents/{agentId}/tasks", "listAgentTasks", "An agent's live tasks",
          "tasks", h.agent_tasks, response=s.TaskList),
    # Tasks
    route("POST", "/v1/tasks", "pushTask", "PUSH mode: a routing request to a queue", "tasks",
          h.push_task, body=s.PushBody, response=s.Task, statuses=(201, 200),
          errors=(404, 409, 422), headers=(IDEMPOTENCY_PARAM,)),
    route("POST", "/v1/agents/{agentId}/tasks", "pullTask",
          "PULL mode / OUTBOUND: a task for a known agent (201 new, 200 existing)", "tasks",
          h.pull_task, body=s.PullBody, response=s.Task, statuses=(200, 201),
          errors=(404, 409, 422)),
    route("POST", "/v1/conversations/{conversationId}/conference", "conference",
          "Conference a queue ({queueId}) or a named agent ({agentId}) in", "tasks",
          h.conference, body=s.ConferenceBody, response=s.Task, statuses=(201,),
          errors=(404, 409, 422)),
    route("POST", "/v1/conversations/{conversationId}/transfer", "transfer",
          "Transfer the conversation to a queue ({queueId}) or a named agent ({agentId})",
          "tasks", h.transfer, body=s.TransferBody, response=s.Task, statuses=(201,),
          errors=(404, 409, 422)),
    route("GET", "/v1/conversations/{conversationId}/tasks", "listConversationTasks",
          "A conversation's tasks, live and recently closed, oldest first", "tasks",
          h.conversation_tasks, response=s.TaskList),
    route("PUT", "/v1/tasks/{taskId}/media/{mediaId}/state", "setMediaState",
          "Accept (ACTIVE) or close (CLOSED) one media of a task", "tasks",
          h.set_media_state, body=s.MediaStateBody, response=s.Task, errors=(404, 409, 422)),
    route("PUT", "/v1/tasks/{taskId}/state", "setTaskState",
          "WRAP_UP or CLOSED a task (CLOSED/RONA on a reserved task declines it)", "tasks",
          h.set_task_state, body=s.TaskStateBody, response=s.Task, errors=(404, 409, 422)),
    route("PUT", "/v1/tasks/{taskId}/priority", "setTaskPriority",
          "Re-prioritise a waiting task: it takes its new place in its queue (409 if not waiting)",
          "tasks", h.set_task_priority, body=s.TaskPriorityBody, response=s.Task,
          errors=(404, 409, 422)),
    route("GET", "/v1/tasks/{taskId}", "getTask", "Read a task", "tasks",
          h.get_task, response=s.Task),
    route("GET", "/v1/tasks/{taskId}/routing", "getTaskRouting",
          "Why a task waits, or why it went to its agent: its queue's candidates with reasons",
          "tasks", h.get_task_routing, response=s.RoutingExplanation),
    route("GET", "/v1/tasks/{taskId}/position", "getTaskPosition",
          "A waiting task's place in its queue's order and its expected wait (409 if not waiting)",
          "tasks", h.get_task_position, response=s.TaskPosition, errors=(404, 409, 422)),
    # Webhooks (v2)
    route("PUT", "/v1/webhooks/{webhookId}", "putWebhook",
          "Create or replace a webhook (its secret is stored for signing, never returned)",
          "webhooks", h.put_webhook, body=s.WebhookBody, response=s.Webhook),
    route("GET", "/v1/webhooks/{webhookId}", "getWebhook", "Read a webhook", "webhooks",
          h.get_webhook, response=s.Webhook),
    route("DELETE", "/v1/webhooks/{webhookId}", "deleteWebhook",
          "Delete a webhook and its pending and failed deliveries", "webhooks",
          h.delete_webhook, statuses=(204,)),
    route("GET", "/v1/webhooks", "listWebhooks", "The tenant's webhooks, in id order",
          "webhooks", h.list_webhooks, response=s.WebhookList, errors=(422,),
          headers=PAGE_PARAMS),
    route("GET", "/v1/webhooks/{webhookId}/deliveries", "listDeliveries",
          "A webhook's FAILED deliveries, oldest failure first", "webhooks",
          h.list_deliveries, response=s.DeliveryList,
          headers=({"name": "status", "in": "query", "required": False,
                    "schema": {"type": "string", "enum": ["FAILED"], "default": "FAILED"}},
                   *PAGE_PARAMS)),
    route("POST", "/v1/webhooks/{webhookId}/deliveries/{deliveryId}/retry", "retryDelivery",
          "Send a FAILED delivery again (it is PENDING, due now)", "webhooks",
          h.retry_delivery, response=s.Delivery, errors=(404, 409, 422)),
]
