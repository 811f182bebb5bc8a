import pytest
import torch

pytestmark = pytest.mark.slow


def test_embedded_model_answers_an_nli_prompt(embedded_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path)
    model = AutoModelForCausalLM.from_pretrained(embedded_model_path)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    messages = [
        {
            "role": "user",
            "content": "Premise: A man is playing a guitar on stage.\n"
            "Hypothesis: A person is making music.\nDoes the premise entail the hypothesis? Answer yes or no.",
        }
    ]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert answer.strip(), "the model produced no text"
    assert output[0, -1].item() == tokenizer.eos_token_id or len(output[0]) == inputs["input_ids"].shape[1] + 20
    # The converted folder is a plain model: no GGUF quantizer marker is left behind.
    assert getattr(model.config, "quantization_config", None) is None
