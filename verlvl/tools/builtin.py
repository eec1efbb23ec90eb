"""Built-in tools: image zoom-in (returns the crop as an image), a calculator, and geo3k's answer checker."""

from __future__ import annotations

import ast
import operator
from typing import Any
from uuid import uuid4

from PIL import Image

from verlvl.tools.base import BaseTool, ToolResponse

ZOOM_SCHEMA = {"type": "function", "function": {
    "name": "image_zoom_in_tool",
    "description": "Zoom in on a region of the image: returns the region [x1, y1, x2, y2] (pixels) enlarged.",
    "parameters": {"type": "object", "properties": {
        "bbox_2d": {"type": "array", "description": "the region as [x1, y1, x2, y2] in image pixels"},
        "label": {"type": "string", "description": "what is in the region (optional)"},
    }, "required": ["bbox_2d"]}}}

CALC_SCHEMA = {"type": "function", "function": {
    "name": "calculator",
    "description": "Evaluate an arithmetic expression with + - * / // % ** and parentheses.",
    "parameters": {"type": "object", "properties": {
        "expression": {"type": "string", "description": "e.g. (3 + 4) * 2"}}, "required": ["expression"]}}}

GEO3K_SCHEMA = {"type": "function", "function": {
    "name": "calc_geo3k_reward",
    "description": "Check your answer to the geometry question; returns whether it is correct.",
    "parameters": {"type": "object", "properties": {
        "answer": {"type": "string", "description": "the answer, e.g. 12.5"}}, "required": ["answer"]}}}


class ImageZoomInTool(BaseTool):
    """Crops [x1, y1, x2, y2] from the trajectory's image (create_kwargs `image`, else the row's first image)
    and enlarges the crop so its longer side is config `output_size` pixels (default 224)."""

    def __init__(self, config: dict, tool_schema: dict | None = None):
        super().__init__(config, tool_schema or ZOOM_SCHEMA)
        self.output_size = int(self.config.get("output_size", 224))
        self.min_side = int(self.config.get("min_side", 4))
        self.instances: dict[str, Image.Image] = {}

    async def create(self, instance_id: str | None = None, **kwargs) -> tuple[str, ToolResponse]:
        instance_id = instance_id or str(uuid4())
        create_kwargs = kwargs.get("create_kwargs") or {}
        image = create_kwargs.get("image") or kwargs.get("image")
        if image is None and kwargs.get("images"):
            image = kwargs["images"][0]
        self.instances[instance_id] = image
        return instance_id, ToolResponse()

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs) -> tuple[ToolResponse, float, dict]:
        image = self.instances.get(instance_id)
        if image is None:
            return ToolResponse(text="Error: there is no image to zoom into."), 0.0, {}
        box = parameters.get("bbox_2d")
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            return ToolResponse(text="Error: bbox_2d must be [x1, y1, x2, y2] (four numbers)."), 0.0, {}
        width, height = image.size
        x1, y1, x2, y2 = (round(v) for v in box)
        x1, x2 = sorted((max(0, min(width, x1)), max(0, min(width, x2))))
        y1, y2 = sorted((max(0, min(height, y1)), max(0, min(height, y2))))
        if x2 - x1 < self.min_side or y2 - y1 < self.min_side:
            return ToolResponse(text=f"Error: the region {box} is smaller than {self.min_side} pixels inside the "
                                     f"{width}x{height} image."), 0.0, {}
        crop = image.convert("RGB").crop((x1, y1, x2, y2))
        scale = self.output_size / max(crop.size)
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
                           Image.Resampling.BICUBIC)
        return ToolResponse(text=None, image=[crop]), 0.0, {}

    async def release(self, instance_id: str, **kwargs) -> None:
        self.instances.pop(instance_id, None)


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def evaluate(expression: str) -> float | int:
    """Arithmetic only (no names, calls or attributes); huge powers are refused."""

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 1e6):
                raise ValueError("the power is too large")
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](walk(node.operand))
        raise ValueError(f"only numbers and + - * / // % ** ( ) are allowed, not {type(node).__name__}")

    if len(expression) > 200:
        raise ValueError("the expression is longer than 200 characters")
    return walk(ast.parse(expression, mode="eval"))


class CalculatorTool(BaseTool):
    def __init__(self, config: dict, tool_schema: dict | None = None):
        super().__init__(config, tool_schema or CALC_SCHEMA)

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs) -> tuple[ToolResponse, float, dict]:
        expression = parameters.get("expression")
        if not isinstance(expression, str):
            return ToolResponse(text="Error: expression must be a string."), 0.0, {}
        try:
            value = evaluate(expression)
        except (ValueError, SyntaxError, ZeroDivisionError, OverflowError) as e:
            return ToolResponse(text=f"Error: {e}"), 0.0, {}
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return ToolResponse(text=str(round(value, 6) if isinstance(value, float) else value)), 0.0, {}


class Geo3kTool(BaseTool):
    """veRL's calc_geo3k_reward: create_kwargs.ground_truth per trajectory; execute(answer) says whether it is
    right (scored by the geo3k scorer) and returns that as the step reward."""

    def __init__(self, config: dict, tool_schema: dict | None = None):
        super().__init__(config, tool_schema or GEO3K_SCHEMA)
        self.instances: dict[str, str] = {}

    async def create(self, instance_id: str | None = None, **kwargs) -> tuple[str, ToolResponse]:
        instance_id = instance_id or str(uuid4())
        self.instances[instance_id] = str((kwargs.get("create_kwargs") or {}).get("ground_truth")
                                          or kwargs.get("ground_truth") or "")
        return instance_id, ToolResponse()

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs) -> tuple[ToolResponse, float, dict]:
        from verlvl.reward.scorers.geo3k import compute_score

        answer = str(parameters.get("answer", ""))
        answer = answer if answer.startswith("\\boxed{") else "\\boxed{" + answer + "}"
        result = compute_score("hiyouga/geometry3k", answer, self.instances.get(instance_id, ""))
        score = float(result["acc"] if isinstance(result, dict) and "acc" in result else
                      result["score"] if isinstance(result, dict) else result)
        return ToolResponse(text=f"Current parsed answer={answer} reward={score}"), score, {}

    async def release(self, instance_id: str, **kwargs) -> None:
        self.instances.pop(instance_id, None)
