{#- Combinations of `columns` that occur more than once. -#}
{% test unique_combination(model, columns) %}

with

final as (

    select {{ columns | join(', ') }}, count(*) as occurrences
    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) > 1

)

select * from final

{% endtest %}
