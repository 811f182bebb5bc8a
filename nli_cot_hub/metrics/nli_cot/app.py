import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("nli_cot")
launch_gradio_widget(module)
