"""Image placeholders expanded to each image's token count, shared by the dataset and the multi-turn loop."""

import pytest

from verlvl.models.vision_inputs import expand_image_placeholders


def test_each_placeholder_becomes_its_images_tokens_in_order():
    assert expand_image_placeholders([1, 9, 2, 9, 3], 9, [2, 3]) == [1, 9, 9, 2, 9, 9, 9, 3]
    assert expand_image_placeholders([1, 2], None, []) == [1, 2]  # a text-only model


@pytest.mark.parametrize("ids,counts,message", [
    ([9, 9], [4], "more image placeholders than the 1 images"),
    ([1, 9], [4, 4], "produced 1 image placeholders for 2 images"),
])
def test_placeholders_and_images_that_do_not_pair_up_are_refused(ids, counts, message):
    with pytest.raises(ValueError, match=message):
        expand_image_placeholders(ids, 9, counts)
