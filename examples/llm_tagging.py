"""Tag companies with an LLM through a YAML workflow.

    python examples/llm_tagging.py [limit=200] [out=demo-out/tags] [workspace=.batchline]

With OPENAI_BASE_URL / OPENAI_API_KEY set (and model=gpt-4o-mini, say) it calls that
provider; otherwise it starts batchline's local OpenAI-compatible server (50 ms a
request) and runs against it, so the example needs no key and no network.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from batchline.testing import OpenAICompatibleServer
from batchline.workflow import WorkflowRunner, load_workflow

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    params = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    workspace = params.pop("workspace", None)
    server = None
    if not os.environ.get("OPENAI_BASE_URL"):
        server = OpenAICompatibleServer(latency=0.05).start()
        os.environ["OPENAI_BASE_URL"] = server.base_url
        os.environ.setdefault("OPENAI_API_KEY", "local-test-server")
        print(f"no OPENAI_BASE_URL: using the local test server at {server.base_url}")
    try:
        spec = load_workflow(HERE / "workflows" / "llm_tagging.yaml")
        runner = WorkflowRunner(
            spec,
            source=HERE / "workflows" / "llm_tagging.yaml",
            params=params,
            base_dir=HERE.parent,
            workspace=workspace,
            out=sys.stderr,
        )
        result = runner.run()
        stats = result.steps["tag"].result["stats"] if "tag" in result.steps else {}
        print(
            f"{result.status}: {stats.get('processed', 0)} tagged, {stats.get('failed', 0)} "
            f"failed, {stats.get('resumed', 0)} resumed"
        )
        return result.exit_code
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
