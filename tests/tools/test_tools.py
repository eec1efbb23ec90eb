"""Tools: Qwen's tool-call format parsed strictly, the built-ins, timeouts and failures as observations, tool configs."""

import asyncio
import textwrap

import pytest
from PIL import Image

from verlvl.tools.base import BaseTool, ToolResponse
from verlvl.tools.builtin import CalculatorTool, ImageZoomInTool, evaluate
from verlvl.tools.config import ToolConfigError, load_tools
from verlvl.tools.parser import ToolCall, parse_tool_calls
from verlvl.tools.runner import run_call, truncate


def test_parse_tool_calls_strictly():
    text = 'first <tool_call>{"name": "calculator", "arguments": {"expression": "1+1"}}</tool_call> then ' \
           '<tool_call>\n{"name": "zoom", "arguments": "{\\"bbox_2d\\": [1, 2, 3, 4]}"}\n</tool_call>'
    content, calls = parse_tool_calls(text, {"calculator", "zoom"})
    assert content == "first  then"
    assert [(c.name, c.arguments, c.error) for c in calls] == [
        ("calculator", {"expression": "1+1"}, ""), ("zoom", {"bbox_2d": [1, 2, 3, 4]}, "")]
    bad = {
        "<tool_call>{name: 1}</tool_call>": "not valid JSON",
        "<tool_call>[1, 2]</tool_call>": "must be a JSON object",
        '<tool_call>{"arguments": {}}</tool_call>': 'no string "name"',
        '<tool_call>{"name": "calculator", "arguments": [1]}</tool_call>': '"arguments" must be a JSON object',
        '<tool_call>{"name": "calculator", "arguments": {}, "x": 1}</tool_call>': "unknown field(s) ['x']",
        '<tool_call>{"name": "rm", "arguments": {}}</tool_call>': "there is no tool 'rm'",
        '<tool_call>{"name": "calculator", "arguments": {}}': "was not closed",
    }
    for text, error in bad.items():
        _, calls = parse_tool_calls(text, {"calculator"})
        assert len(calls) == 1 and error in calls[0].error, (text, calls)
    assert parse_tool_calls("no calls here", {"calculator"}) == ("no calls here", [])


def test_calculator():
    assert evaluate("(3 + 4) * 2 - 10 / 4") == 11.5
    assert evaluate("-2 ** 3 % 5") == 2
    for expression in ("__import__('os')", "x + 1", "9 ** 9999", "(1).real"):
        with pytest.raises((ValueError, SyntaxError)):
            evaluate(expression)
    tool = CalculatorTool({})
    assert asyncio.run(tool.execute("i", {"expression": "6 * 7"}))[0].text == "42"
    assert asyncio.run(tool.execute("i", {"expression": "1 / 0"}))[0].text.startswith("Error")


def test_zoom_returns_the_enlarged_region():
    image = Image.new("RGB", (100, 80), (255, 255, 255))
    image.paste((255, 0, 0), (10, 20, 30, 40))  # a red 20x20 square
    tool = ImageZoomInTool({"output_size": 64})

    async def zoom(box):
        instance, _ = await tool.create(images=[image])
        try:
            return (await tool.execute(instance, {"bbox_2d": box}))[0]
        finally:
            await tool.release(instance)

    out = asyncio.run(zoom([10, 20, 30, 40]))
    assert out.text is None and len(out.image) == 1 and out.image[0].size == (64, 64)
    assert out.image[0].getpixel((32, 32)) == (255, 0, 0)
    clamped = asyncio.run(zoom([-50, -50, 200, 200])).image[0]
    assert clamped.size == (64, 51)  # the whole 100x80 image, longer side 64
    assert "smaller than" in asyncio.run(zoom([5, 5, 6, 6])).text
    assert "four numbers" in asyncio.run(zoom("0,0,1,1")).text
    assert not tool.instances  # released


class SlowTool(BaseTool):
    async def execute(self, instance_id, parameters, **kwargs):
        await asyncio.sleep(30)
        return ToolResponse(text="late"), 0.0, {}


class BrokenTool(BaseTool):
    async def execute(self, instance_id, parameters, **kwargs):
        raise KeyError("missing")


def _schema(name):
    return {"type": "function", "function": {"name": name, "description": "d",
                                             "parameters": {"type": "object", "properties": {}}}}


def test_timeouts_failures_and_bad_calls_are_observations():
    slow = asyncio.run(run_call(SlowTool({}, _schema("slow")), "i", ToolCall("slow"), timeout_s=0.05))
    assert "did not answer within 0.05 s" in slow.error and slow.text.startswith("Error:")
    broken = asyncio.run(run_call(BrokenTool({}, _schema("broken")), "i", ToolCall("broken"), timeout_s=5))
    assert "raised KeyError" in broken.error
    bad = asyncio.run(run_call(None, None, ToolCall(error="the tool call is not valid JSON"), timeout_s=5))
    assert bad.text == "Error: the tool call is not valid JSON"
    assert truncate("abcdefghij", 4, "middle") == "ab...(truncated)...ij"
    assert truncate("abcdefghij", 4, "left") == "...(truncated)ghij"


def test_tool_config_yaml(tmp_path):
    user = tmp_path / "my_tools.py"
    user.write_text(textwrap.dedent('''
        from verlvl.tools.base import BaseTool, ToolResponse

        class Echo(BaseTool):
            async def execute(self, instance_id, parameters, **kwargs):
                return ToolResponse(text=self.config["prefix"] + parameters["text"]), 0.0, {}
    '''))
    config = tmp_path / "tools.yaml"
    config.write_text(textwrap.dedent(f'''
        tools:
          - class_name: verl.tools.image_zoom_in_tool.ImageZoomInTool
            config: {{type: native, output_size: 112}}
            tool_schema:
              type: function
              function:
                name: image_zoom_in_tool
                description: zoom
                parameters: {{type: object, properties: {{bbox_2d: {{type: array}}}}, required: [bbox_2d]}}
          - class_name: verlvl.tools.builtin.CalculatorTool
            config: {{type: native}}
          - class_name: {user}:Echo
            config: {{type: native, prefix: "> "}}
            tool_schema:
              type: function
              function:
                name: echo
                description: say it back
                parameters: {{type: object, properties: {{text: {{type: string}}}}, required: [text]}}
    '''))
    zoom, calc, echo = load_tools(str(config))
    assert (zoom.name, zoom.output_size, calc.name, echo.name) == ("image_zoom_in_tool", 112, "calculator", "echo")
    assert asyncio.run(echo.execute("i", {"text": "hi"}))[0].text == "> hi"

    def refused(body, message):
        config.write_text(textwrap.dedent(body))
        with pytest.raises(ToolConfigError, match=message):
            load_tools(str(config))

    refused("tools:\n  - class_name: verlvl.tools.builtin.Nope\n    config: {type: native}\n", "has no class 'Nope'")
    refused("tools:\n  - class_name: verlvl.tools.builtin.CalculatorTool\n    config: {type: mcp}\n", "only native")
    refused("tools:\n  - class_name: verlvl.tools.builtin.CalculatorTool\n"
            "  - class_name: verlvl.tools.builtin.CalculatorTool\n", "two tools are named 'calculator'")
    refused("tools:\n  - class_name: verlvl.tools.builtin.CalculatorTool\n    tool_schema: {type: function, "
            "function: {name: c, parameters: {type: object, properties: {}, required: [x]}}}\n",
            r"required names \['x'\]")
    with pytest.raises(ToolConfigError, match="no such file"):
        load_tools(str(tmp_path / "missing.yaml"))
